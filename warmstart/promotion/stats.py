"""Paired bootstrap statistics over seeds and test examples: pure numpy, no I/O, so every number
in a verdict can be recomputed from the per-example correctness arrays.

Correctness arrays are boolean, shaped ``(seeds, examples)``: row ``s`` is the model trained with
seed ``s``, column ``n`` is test example ``n``. Candidate and scratch rows with the same index share
the seed (same split, same initialisation seed), so the comparison is paired over both seeds and
examples. A single model (the current champion) is one row; it is broadcast against every seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import stdtrit

from warmstart.errors import DataError

N_BOOT = 2000  # bootstrap resamples
BOOT_SEED = 0  # the resampling seed: the same arrays always give the same interval
ALPHA = 0.05  # 95% intervals


def _as_matrix(correct: np.ndarray | Sequence, what: str) -> np.ndarray:
    arr = np.asarray(correct)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise DataError(
            f"{what} has shape {arr.shape}: pass a (seeds, examples) array of per-example "
            "correctness with at least one example"
        )
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise DataError(f"{what} holds values other than 0/1: pass per-example correctness")
        arr = arr.astype(bool)
    return arr


def _paired(candidate: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Per-(seed, example) differences in {-1, 0, 1}; a single row is broadcast over seeds."""
    c = _as_matrix(candidate, "candidate_correct")
    b = _as_matrix(baseline, "baseline_correct")
    if c.shape[1] != b.shape[1]:
        raise DataError(
            f"candidate has {c.shape[1]} test examples, baseline {b.shape[1]}: evaluate both on "
            "the same test split"
        )
    if c.shape[0] != b.shape[0] and 1 not in (c.shape[0], b.shape[0]):
        raise DataError(
            f"candidate has {c.shape[0]} seeds, baseline {b.shape[0]}: pair them seed by seed "
            "(same seeds for both) or pass one row for a single model"
        )
    return c.astype(np.float64) - b.astype(np.float64)


def _bootstrap_means(values: np.ndarray, *, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap distribution of the grand mean of a (seeds, examples) matrix.

    Two-level resampling: examples with replacement (the test set is a sample of the target
    distribution) and seeds with replacement (training is random). Implemented with multinomial
    counts, so it costs two small matrix products instead of a Python loop.
    """
    if n_boot < 1:
        raise DataError(f"n_boot={n_boot}: use at least 1 bootstrap resample (default 2000)")
    rng = np.random.default_rng(seed)
    s, n = values.shape
    example_counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # (B, N)
    per_seed = example_counts @ values.T / n  # (B, S): each seed's mean on resampled examples
    if s == 1:
        return per_seed[:, 0]
    seed_counts = rng.multinomial(s, np.full(s, 1.0 / s), size=n_boot)  # (B, S)
    return (seed_counts * per_seed).sum(axis=1) / s


def _ci(dist: np.ndarray, alpha: float) -> tuple[float, float]:
    if not 0.0 < alpha < 1.0:
        raise DataError(f"alpha={alpha}: use a level in (0, 1), e.g. 0.05 for a 95% interval")
    low, high = np.quantile(dist, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _interval(values: np.ndarray, *, n_boot: int, seed: int, alpha: float) -> dict[str, Any]:
    """Mean of a (seeds, examples) matrix, its percentile bootstrap CI and its size."""
    low, high = _ci(_bootstrap_means(values, n_boot=n_boot, seed=seed), alpha)
    return {
        "mean": float(values.mean()),
        "ci_low": low,
        "ci_high": high,
        "n": int(values.shape[1]),
        "seeds": int(values.shape[0]),
    }


def paired_bootstrap(
    candidate_correct: np.ndarray,
    baseline_correct: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    alpha: float = ALPHA,
) -> dict[str, float | int]:
    """Percentile bootstrap CI of accuracy(candidate) − accuracy(baseline) on the same examples.

    Pairing keeps the example (and the seed) fixed across both arms, so the per-example noise
    common to both cancels: the interval is much narrower than comparing two separate CIs.
    Returns ``mean_diff, ci_low, ci_high`` (fractions, not points), ``n`` (test examples),
    ``seeds``, ``candidate_accuracy``, ``baseline_accuracy``, ``n_boot`` and ``alpha``.
    """
    diff = _paired(candidate_correct, baseline_correct)
    interval = _interval(diff, n_boot=n_boot, seed=seed, alpha=alpha)
    c = _as_matrix(candidate_correct, "candidate_correct")
    b = _as_matrix(baseline_correct, "baseline_correct")
    return {
        "mean_diff": interval.pop("mean"),
        **interval,
        "candidate_accuracy": float(c.mean()),
        "baseline_accuracy": float(b.mean()),
        "n_boot": int(n_boot),
        "alpha": float(alpha),
    }


def accuracy_ci(
    correct: np.ndarray, *, n_boot: int = N_BOOT, seed: int = BOOT_SEED, alpha: float = ALPHA
) -> dict[str, float | int]:
    """Mean accuracy over seeds and examples with a bootstrap CI (same resampling as the gate)."""
    values = _as_matrix(correct, "correct").astype(np.float64)
    interval = _interval(values, n_boot=n_boot, seed=seed, alpha=alpha)
    return {"accuracy": interval.pop("mean"), **interval}


def seed_t_interval(
    candidate_correct: np.ndarray | Sequence,
    baseline_correct: np.ndarray | Sequence,
    *,
    alpha: float = ALPHA,
    weights: np.ndarray | None = None,
) -> dict[str, float | int | str]:
    """Paired Student-t CI of accuracy(candidate) − accuracy(baseline), over seeds (with
    per-example ``weights``: of the weighted accuracies, e.g. balanced accuracy).

    The unit is the seed: row ``s`` of both arrays was trained with seed ``s`` (a fresh
    initialisation and a fresh k-shot draw), and ``d_s`` is the difference of the two rows'
    accuracies on the same test examples. The interval is ``mean(d) ± t(S-1) · sd(d)/√S``. Seed
    variance, which a 3-seed bootstrap cannot estimate, is carried by ``sd(d)``; the test
    examples' own noise is inside each ``d_s``. Its calibration (false promotions with
    identical arms) is measured in ``warmstart.promotion.simulate``. Same keys as
    ``paired_bootstrap``, plus ``method`` and ``df``.
    """
    diff = _paired(candidate_correct, baseline_correct)
    if diff.shape[0] < 2:
        raise DataError(
            f"a seed-level interval needs at least 2 paired seeds, got {diff.shape[0]}: "
            "train both arms on more confirmation seeds (confirm_seeds >= 2; 5 by default)"
        )
    if not 0.0 < alpha < 1.0:
        raise DataError(f"alpha={alpha}: use a level in (0, 1), e.g. 0.05 for a 95% interval")
    w = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    per_seed = diff.mean(axis=1) if w is None else diff @ w
    s = per_seed.size
    half = float(stdtrit(s - 1, 1.0 - alpha / 2.0) * per_seed.std(ddof=1) / np.sqrt(s))
    mean = float(per_seed.mean())
    c = _as_matrix(candidate_correct, "candidate_correct")
    b = _as_matrix(baseline_correct, "baseline_correct")
    return {
        "mean_diff": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "n": int(diff.shape[1]),
        "seeds": int(s),
        "candidate_accuracy": float(c.mean() if w is None else (c @ w).mean()),
        "baseline_accuracy": float(b.mean() if w is None else (b @ w).mean()),
        "alpha": float(alpha),
        "method": "seed-t",
        "df": int(s - 1),
    }
