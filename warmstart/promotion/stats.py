"""The gate's statistics: pure numpy, no I/O, so every number in a verdict can be recomputed from
the per-example correctness arrays. ``two_way_interval`` is the gate's (seeds and test images);
``seed_t_interval`` (seeds only) and ``paired_bootstrap`` are kept for comparison and for bare
arrays without confirmation seeds.

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
    examples' own noise is inside each ``d_s``, but only as far as it differs between seeds: a
    test set's persistent per-image luck is common to every ``d_s`` and not counted. The gate
    used it until issue 21; ``two_way_interval`` replaced it (``warmstart.promotion.simulate``
    measures both). Same keys as ``paired_bootstrap``, plus ``method`` and ``df``.
    """
    diff, w = _seeded(candidate_correct, baseline_correct, weights, alpha)
    per_seed = diff @ w
    s = per_seed.size
    var = float(per_seed.var(ddof=1) / s)
    return _t_result(candidate_correct, baseline_correct, diff, w, var, s - 1, alpha, "seed-t")


def _seeded(candidate, baseline, weights, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The (seeds, examples) differences of at least 2 paired seeds and normalised weights."""
    diff = _paired(candidate, baseline)
    if diff.shape[0] < 2:
        raise DataError(
            f"a seed-level interval needs at least 2 paired seeds, got {diff.shape[0]}: "
            "train both arms on more confirmation seeds (confirm_seeds >= 2; 5 by default)"
        )
    if not 0.0 < alpha < 1.0:
        raise DataError(f"alpha={alpha}: use a level in (0, 1), e.g. 0.05 for a 95% interval")
    return diff, _normalised(weights, diff.shape[1])


def _normalised(weights: np.ndarray | Sequence | None, n: int) -> np.ndarray:
    """Per-example weights summing to 1 (equal weights when None): the metric is the weighted
    mean of per-example correctness."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise DataError(
            f"weights has shape {w.shape}: pass {n} finite, non-negative per-example weights "
            "with a positive sum (e.g. class_balanced_weights(y_test) for balanced accuracy)"
        )
    return w / w.sum()


def _t_result(cand, base, diff, w, var: float, df: float, alpha: float, method: str) -> dict:
    """The interval's dict: mean ± t(df) · √var, with the arms' (weighted) metrics."""
    mean = float((diff @ w).mean())
    half = float(stdtrit(df, 1.0 - alpha / 2.0) * np.sqrt(max(var, 0.0)))
    c = _as_matrix(cand, "candidate_correct").astype(np.float64)
    b = _as_matrix(base, "baseline_correct").astype(np.float64)
    return {
        "mean_diff": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "n": int(diff.shape[1]),
        "seeds": int(diff.shape[0]),
        "candidate_accuracy": float((c @ w).mean()),
        "baseline_accuracy": float((b @ w).mean()),
        "alpha": float(alpha),
        "method": method,
        "df": int(df) if method == "seed-t" else round(float(df), 1),
    }


def two_way_interval(
    candidate_correct: np.ndarray | Sequence,
    baseline_correct: np.ndarray | Sequence,
    *,
    weights: np.ndarray | Sequence | None = None,
    alpha: float = ALPHA,
) -> dict[str, float | int | str]:
    """Paired t CI of metric(candidate) − metric(baseline) that counts both sources of variation:
    the training seeds and the test images (the gate's interval; method ``two-way``).

    ``d[s, n]`` is the paired difference on test image ``n`` for seed ``s``; the metric of a seed
    is ``Σ w_n d[s, n]`` (weights normalised to sum 1; equal weights give accuracy, weights
    ``1/(K·n_class(y_n))`` balanced accuracy). Seeds and images are a crossed two-way layout
    (Bouthillier et al. 2021): ``d = μ + a_s + e_n + (ae)_sn``. The variance of the grand mean is
    ``σ_a²/S + σ_e²·Σw² + σ_ae²·Σw²/S``; it is estimated as

    - **seed term** ``var_s(m_s)/S`` of the per-seed metrics ``m_s`` (``σ_a²/S + σ_ae²Σw²/S``:
      the seed-t interval's whole variance), plus
    - **image term** ``max(0, V_p − σ̂_ae²·Σw²/S)``: ``V_p = N/(N−1) Σ w_n² (p_n − d̄)²`` of the
      per-image means over seeds ``p_n`` estimates ``σ_e²Σw² + σ_ae²Σw²/S``, and the interaction
      (residual mean square ``σ̂_ae²``) is subtracted so it is not counted twice (with no
      persistent per-image effects the two-term sum would double it and lose power);

    with Welch–Satterthwaite degrees of freedom (``S−1`` when the image term is 0). The choice
    over a crossed seeds × images bootstrap is measured in ``warmstart.promotion.simulate``
    (docs/STATISTICS.md). With non-equal weights ``V_p`` is taken around the overall weighted
    mean, which over-states it when the strata differ (conservative); drop excluded images from
    the arrays rather than giving them weight 0 (the sizes count them). Same keys as
    ``seed_t_interval`` (``method`` ``two-way``, ``df`` a float) plus ``seed_var``, ``image_var``
    and ``per_image_var`` (``V_p``).
    """
    diff, w = _seeded(candidate_correct, baseline_correct, weights, alpha)
    s, n = diff.shape
    per_seed = diff @ w
    per_image = diff.mean(axis=0)
    grand = float(per_seed.mean())
    seed_var = float(per_seed.var(ddof=1) / s)
    sw2 = float(w @ w)
    v_p = float(n / max(n - 1, 1) * np.sum(w**2 * (per_image - grand) ** 2))
    resid = diff - per_seed[:, None] - per_image[None, :] + grand
    inter = float((n * w * resid**2).sum() / ((s - 1) * max(n - 1, 1))) * sw2 / s
    image_var = max(v_p - inter, 0.0)
    var = seed_var + image_var
    df: float = s - 1
    if image_var > 0.0:
        parts = seed_var**2 / (s - 1) + v_p**2 / max(n - 1, 1)
        df = var**2 / (parts + inter**2 / ((s - 1) * max(n - 1, 1)))
    res = _t_result(candidate_correct, baseline_correct, diff, w, var, df, alpha, "two-way")
    return res | {"seed_var": seed_var, "image_var": image_var, "per_image_var": v_p}


def class_balanced_weights(labels: np.ndarray | Sequence) -> np.ndarray:
    """Per-example weights ``1/(K·n_class(y))``: their weighted mean of correctness is balanced
    accuracy (the mean of per-class recalls), for ``two_way_interval(weights=…)``."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise DataError(f"labels has shape {y.shape}: pass one label per test example")
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return 1.0 / (classes.size * counts[inverse])
