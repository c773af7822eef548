"""How often does the gate promote an arm that is no better than scratch? A plain-numpy
simulation of both protocols, the measurement behind the choice of the gate's interval.

The model (the review's): every transfer arm and scratch have the same expected accuracy. A
training seed draws the model's true accuracy ``p_s = accuracy + N(0, seed_sd)``; a lucky seed is
lucky on both splits, so validation (``n_val`` images) and test (``n_test`` images) correctness
are Bernoulli(``p_s``) per example.

- ``old``: the candidate is the best of ``arms`` on mean validation accuracy over the selection
  seeds, then the same seeds are gated on test with the paired bootstrap over seeds × examples
  (``stats.paired_bootstrap``'s resampling). Selection luck and an underestimated seed variance (3 seeds) both leak into the interval.
- ``new``: the same selection, then the chosen arm and scratch are trained again on
  ``confirm_seeds`` fresh seeds (new initialisation and k-shot draw) and the gate uses only those,
  with the seed-level paired t interval (``stats.seed_t_interval``).

Both promote when the 95% interval's lower bound exceeds the margin (0): the nominal false
promotion rate is 2.5% (one-sided). ``benchmarks/false_promotion.py`` prints the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from warmstart.promotion.stats import ALPHA, N_BOOT, seed_t_interval

NOMINAL = ALPHA / 2.0  # a one-sided error: promoting when the lower bound is above 0 wrongly


@dataclass(frozen=True)
class Scenario:
    """One simulated setting (accuracies and SDs are fractions: 0.027 = 2.7 points)."""

    seed_sd: float = 0.027
    effect: float = 0.0  # true accuracy(arm) − accuracy(scratch), the same for every arm
    arms: int = 6
    selection_seeds: int = 3
    confirm_seeds: int = 5
    n_test: int = 360
    n_val: int = 270
    accuracy: float = 0.9
    margin: float = 0.0
    n_boot: int = N_BOOT  # bootstrap resamples of the old procedure (as the gate's)


def _true_acc(rng: np.random.Generator, sc: Scenario, shape: tuple, effect: float) -> np.ndarray:
    p = sc.accuracy + effect + rng.normal(0.0, sc.seed_sd, size=shape)
    return np.clip(p, 0.0, 1.0)


def _test_correct(rng: np.random.Generator, p: np.ndarray, n: int) -> np.ndarray:
    """(seeds, n) per-example correctness for seeds with true accuracies ``p``."""
    return rng.random((p.size, n)) < p[:, None]


def _select(rng: np.random.Generator, sc: Scenario) -> np.ndarray:
    """Selection on validation: the chosen arm's per-seed true accuracies."""
    p = _true_acc(rng, sc, (sc.arms, sc.selection_seeds), sc.effect)
    val = rng.binomial(sc.n_val, p) / sc.n_val
    return p[int(np.argmax(val.mean(axis=1)))]


def old_procedure(rng: np.random.Generator, sc: Scenario) -> bool:
    """Best of ``arms`` on validation, gated on the same seeds' test predictions (bootstrap)."""
    chosen = _select(rng, sc)
    scratch = _true_acc(rng, sc, (sc.selection_seeds,), 0.0)
    cand = _test_correct(rng, chosen, sc.n_test)
    base = _test_correct(rng, scratch, sc.n_test)
    if cand.mean() <= base.mean() + sc.margin:  # the lower bound cannot be above the margin
        return False
    return _bootstrap_low(cand.astype(np.int8) - base.astype(np.int8), rng, sc.n_boot) > sc.margin


def _bootstrap_low(diff: np.ndarray, rng: np.random.Generator, n_boot: int) -> float:
    """The lower bound of ``stats.paired_bootstrap`` for a (seeds, examples) difference matrix.

    The same two-level resampling (examples, then seeds, with replacement), drawn over the
    distinct per-example columns (at most 3^seeds of them) instead of over all examples: the same
    distribution, a hundred times faster, which is what makes thousands of runs affordable.
    """
    s, n = diff.shape
    digits = 3 ** np.arange(s)
    counts = np.bincount((diff + 1).T @ digits, minlength=3**s)  # columns as base-3 codes
    patterns = (np.arange(3**s)[:, None] // digits % 3 - 1)[counts > 0]  # (K, S)
    examples = rng.multinomial(n, counts[counts > 0] / n, size=n_boot)  # (B, K)
    per_seed = examples @ patterns.astype(np.float64) / n  # (B, S)
    seeds = rng.multinomial(s, np.full(s, 1.0 / s), size=n_boot)  # (B, S)
    return float(np.quantile((seeds * per_seed).sum(axis=1) / s, ALPHA / 2.0))


def new_procedure(rng: np.random.Generator, sc: Scenario) -> bool:
    """The same selection, then fresh confirmation seeds for the arm and scratch (seed-t)."""
    _select(rng, sc)  # its luck stays with the selection seeds: nothing of it is reused
    arm = _true_acc(rng, sc, (sc.confirm_seeds,), sc.effect)
    scratch = _true_acc(rng, sc, (sc.confirm_seeds,), 0.0)
    cand = _test_correct(rng, arm, sc.n_test)
    base = _test_correct(rng, scratch, sc.n_test)
    return seed_t_interval(cand, base)["ci_low"] > sc.margin


PROCEDURES: dict[str, Callable[[np.random.Generator, Scenario], bool]] = {
    "old": old_procedure,
    "new": new_procedure,
}


def promotion_rate(procedure: str, sc: Scenario, *, sims: int = 1000, seed: int = 0) -> float:
    """The fraction of ``sims`` simulated runs the procedure promotes (deterministic in ``seed``).
    With ``effect=0`` it is the false promotion rate; with ``effect>0`` the power."""
    rng = np.random.default_rng([seed, int(round(sc.seed_sd * 1e4)), int(round(sc.effect * 1e4))])
    run = PROCEDURES[procedure]
    return sum(run(rng, sc) for _ in range(sims)) / sims
