"""How often does the gate promote an arm that is no better than scratch? A simulation that runs
the gate's own decision (``policy.decide`` on confirmation seeds) on test sets drawn from a
larger population, the measurement behind the choice of the gate's interval.

The model: a population of images in which each arm has its own **persistent** per-image error
tendency (an image one arm gets wrong, it tends to get wrong on every seed). Arm ``j``, seed
``s``, image ``n`` is correct with probability ``sigmoid(α_j + a_js + u_jn)``:

- ``u_jn ~ N(0, persistence²)``: the arm's per-image tendency, the same for every seed (logit
  scale; 0 = none, errors independent across seeds);
- ``a_js ~ N(0, σ²)``: the seed's luck, with ``σ`` set so that the seed-to-seed SD of the arm's
  population accuracy is ``seed_sd``;
- ``α_j`` is solved so that the arm's population accuracy (over seeds and images) is
  ``accuracy`` for scratch and ``accuracy + effect`` for the arm: with ``effect=0`` the arms are
  equal on the population, and every promotion is a false one.

Each simulated run draws a fresh test set of ``n_test`` images from the population and trains
(draws) ``confirm_seeds`` seeds of each arm, then asks ``policy.decide`` with the given interval
(``two-way``: the gate's; ``seed-t``: the one it used before issue 21; ``bootstrap``: seeds ×
images resampled, a rejected candidate, as is ``two-way-sum``). Promotion = the 95%
interval's lower bound above margin 0: the nominal false-promotion rate is 2.5% (one-sided).
``benchmarks/interval_calibration.py`` prints the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, stdtrit

from warmstart.contracts import SCRATCH, ArmScores
from warmstart.promotion.policy import decide
from warmstart.promotion.stats import ALPHA

NOMINAL = ALPHA / 2.0  # a one-sided error: promoting when the lower bound is above 0 wrongly
PERSISTENCE = {"none": 0.0, "mild": 1.0, "strong": 2.5}  # logit SD of u_jn
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(64)  # E[f(Z)], Z ~ N(0, 1)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


@dataclass(frozen=True)
class Scenario:
    """One simulated setting (accuracies and SDs are fractions: 0.01 = 1 point)."""

    persistence: float = 0.0  # logit SD of an arm's per-image tendency (PERSISTENCE)
    seed_sd: float = 0.01  # seed-to-seed SD of an arm's population accuracy
    n_test: int = 359
    effect: float = 0.0  # population accuracy(arm) − accuracy(scratch)
    accuracy: float = 0.9  # scratch's population accuracy
    confirm_seeds: int = 5
    margin: float = 0.0


def _population_accuracy(alpha: float, spread: float) -> float:
    return float(_WEIGHTS @ expit(alpha + spread * _NODES))


def _intercept(target: float, spread: float) -> float:
    """α with E[sigmoid(α + N(0, spread²))] = target."""
    return brentq(lambda a: _population_accuracy(a, spread) - target, -30.0, 30.0)


def _seed_logit_sd(sc: Scenario, alpha: float) -> float:
    """The logit SD of a seed's shift that gives ``seed_sd`` in population accuracy (slope of
    the accuracy in α at the arm's intercept, over the images' spread)."""
    slope = float(
        _WEIGHTS
        @ (expit(alpha + sc.persistence * _NODES) * expit(-alpha - sc.persistence * _NODES))
    )
    return sc.seed_sd / slope


def arm_parameters(sc: Scenario) -> list[tuple[float, float]]:
    """(intercept, seed logit SD) of the arm and of scratch."""
    out = []
    for target in (sc.accuracy + sc.effect, sc.accuracy):
        alpha = _intercept(target, sc.persistence)
        sigma = _seed_logit_sd(sc, alpha)
        # the seed shift widens the spread: solve again so the accuracy over seeds is the target
        alpha = _intercept(target, float(np.hypot(sc.persistence, sigma)))
        out.append((alpha, sigma))
    return out


def _draw(rng: np.random.Generator, sc: Scenario, alpha: float, sigma: float) -> np.ndarray:
    """(seeds, n_test) correctness of one arm on a fresh test set from the population."""
    u = rng.normal(0.0, sc.persistence, size=sc.n_test)
    a = rng.normal(0.0, sigma, size=(sc.confirm_seeds, 1))
    return rng.random((sc.confirm_seeds, sc.n_test)) < expit(alpha + a + u)


def _scores(arm: str, correct: np.ndarray, protocol: dict) -> ArmScores:
    seeds = list(range(1000, 1000 + correct.shape[0]))
    acc = correct.mean(axis=1).tolist()
    return ArmScores(arm, None, "finetune", seeds, acc, acc, correct, [], protocol=protocol)


_RECORD = {
    "phase": "confirmation",
    "selection_seeds": [0, 1],
    "arms_compared": 1,
    "transfer_configs": 1,
    "scratch_configs": 1,
    "scratch_config": {"lr": None, "weight_decay": None},
    "labels": {},
    "confirmation_seeds": [],
    "source_gain": None,
}


def one_run(rng: np.random.Generator, sc: Scenario, intervals: tuple[str, ...], params=None):
    """One simulated run: the same draws through ``policy.decide`` once per interval; whether
    each promoted (and ``two-way-sum``, the rejected candidate, when ``two-way`` is asked)."""
    (a_arm, s_arm), (a_scr, s_scr) = params or arm_parameters(sc)
    record = _RECORD | {"confirmation_seeds": list(range(1000, 1000 + sc.confirm_seeds))}
    cand = _scores("sim/finetune", _draw(rng, sc, a_arm, s_arm), record)
    base = _scores(SCRATCH, _draw(rng, sc, a_scr, s_scr), {})
    out = {}
    for interval in intervals:
        decision = decide(cand, base, margin=sc.margin, interval=interval)
        out[interval] = decision.passed
        if interval == "two-way":
            out[SUM] = double_counted_low(decision.delta_vs_scratch) > sc.margin
    return out


SUM = "two-way-sum"  # the rejected candidate: var_s/S + var_n/N, the interaction counted twice


def double_counted_low(d: dict) -> float:
    """The lower bound of the naive sum ``var(m_s)/S + V_p`` (Satterthwaite df over its two
    terms) from a ``two_way_interval`` result: the candidate the gate's interval was chosen over."""
    var = d["seed_var"] + d["per_image_var"]
    s, n = d["seeds"], d["n"]
    parts = d["seed_var"] ** 2 / (s - 1) + d["per_image_var"] ** 2 / max(n - 1, 1)
    df = var**2 / parts if parts > 0 else s - 1
    return d["mean_diff"] - float(stdtrit(df, 1.0 - d["alpha"] / 2.0) * np.sqrt(var))


def promotion_rates(
    sc: Scenario, intervals: tuple[str, ...], *, sims: int = 1000, seed: int = 0
) -> dict[str, float]:
    """The fraction of ``sims`` simulated runs the gate promotes, per interval, on the same draws
    (deterministic in ``seed``). With ``effect=0`` the false-promotion rate, else the power."""
    key = [seed, int(round(sc.persistence * 100)), int(round(sc.seed_sd * 1e4)), sc.n_test]
    rng = np.random.default_rng([*key, int(round(sc.effect * 1e4))])
    params = arm_parameters(sc)
    counts: dict[str, int] = {}
    for _ in range(sims):
        for name, passed in one_run(rng, sc, intervals, params).items():
            counts[name] = counts.get(name, 0) + passed
    return {name: c / sims for name, c in counts.items()}


def promotion_rate(interval: str, sc: Scenario, *, sims: int = 1000, seed: int = 0) -> float:
    """``promotion_rates`` of one interval."""
    return promotion_rates(sc, (interval,), sims=sims, seed=seed)[interval]


def recurrence(persistence: float, accuracy: float = 0.9) -> float:
    """P(an image is wrong on a second seed | wrong on the first) for one arm: how persistent a
    setting is, in the terms the demo's predictions can be read in (no seed spread)."""
    alpha = _intercept(accuracy, persistence)
    err = expit(-alpha - persistence * _NODES)
    return float(_WEIGHTS @ err**2 / (_WEIGHTS @ err))
