"""The promotion gate: paired bootstrap statistics over seeds and test examples, and the decision.

Pure numpy, no I/O, so every number in a verdict can be recomputed from the per-example
correctness arrays. See ARCHITECTURE.md, "The gate".

Correctness arrays are boolean, shaped ``(seeds, examples)``: row ``s`` is the model trained with
seed ``s``, column ``n`` is test example ``n``. Candidate and scratch rows with the same index share
the seed (same split, same initialisation seed), so the comparison is paired over both seeds and
examples. A single model (the current champion) is one row; it is broadcast against every seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from warmstart.errors import DataError

# Simpler transfer modes first: fewer trainable parameters / fewer stages win a validation tie.
MODE_SIMPLICITY = {"linear_probe": 0, "finetune": 1, "lp_ft": 2}
# Entries select_candidate skips: the baseline and controls are never promotion candidates.
NON_CANDIDATE_STRATEGIES = frozenset({"scratch", "random_init", "control"})


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


def paired_bootstrap(
    candidate_correct: np.ndarray,
    baseline_correct: np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int]:
    """Percentile bootstrap CI of accuracy(candidate) − accuracy(baseline) on the same examples.

    Pairing keeps the example (and the seed) fixed across both arms, so the per-example noise
    common to both cancels: the interval is much narrower than comparing two separate CIs.
    Returns ``mean_diff, ci_low, ci_high`` (fractions, not points), ``n`` (test examples),
    ``seeds``, ``candidate_accuracy``, ``baseline_accuracy``, ``n_boot`` and ``alpha``.
    """
    diff = _paired(candidate_correct, baseline_correct)
    dist = _bootstrap_means(diff, n_boot=n_boot, seed=seed)
    low, high = _ci(dist, alpha)
    c = _as_matrix(candidate_correct, "candidate_correct")
    b = _as_matrix(baseline_correct, "baseline_correct")
    return {
        "mean_diff": float(diff.mean()),
        "ci_low": low,
        "ci_high": high,
        "n": int(diff.shape[1]),
        "seeds": int(diff.shape[0]),
        "candidate_accuracy": float(c.mean()),
        "baseline_accuracy": float(b.mean()),
        "n_boot": int(n_boot),
        "alpha": float(alpha),
    }


def accuracy_ci(
    correct: np.ndarray, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> dict[str, float | int]:
    """Mean accuracy over seeds and examples with a bootstrap CI (same resampling as the gate)."""
    values = _as_matrix(correct, "correct").astype(np.float64)
    low, high = _ci(_bootstrap_means(values, n_boot=n_boot, seed=seed), alpha)
    return {
        "accuracy": float(values.mean()),
        "ci_low": low,
        "ci_high": high,
        "n": int(values.shape[1]),
        "seeds": int(values.shape[0]),
    }


def _pts(x: float) -> str:
    """A difference of fractions as signed percentage points."""
    return f"{100.0 * x:+.1f}"


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}%"


@dataclass
class GateDecision:
    """A promotion verdict with the numbers behind it (fractions; the text shows points)."""

    passed: bool
    verdict: str  # "promoted" | "not promoted"
    reason: str  # one sentence with the numbers
    candidate: str
    delta_vs_scratch: dict[str, Any]
    vs_champion: dict[str, Any] | None
    margin: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (plain floats, ints, strings)."""
        return asdict(self)

    def to_markdown(self) -> str:
        d = self.delta_vs_scratch
        level = round(100 * (1 - d.get("alpha", 0.05)))
        lines = [
            f"## Gate: **{self.verdict}** — `{self.candidate}`",
            "",
            self.reason,
            "",
            "| comparison | candidate acc | other acc | Δ (points) | "
            f"{level}% CI (points) | condition | met |",
            "|---|---|---|---|---|---|---|",
            (
                f"| vs scratch | {_pct(d['candidate_accuracy'])} | {_pct(d['baseline_accuracy'])}"
                f" | {_pts(d['mean_diff'])} | [{_pts(d['ci_low'])}, {_pts(d['ci_high'])}]"
                f" | CI lower bound > {_pts(self.margin)} | "
                f"{'yes' if d['ci_low'] > self.margin else 'no'} |"
            ),
        ]
        if self.vs_champion is not None:
            c = self.vs_champion
            lines.append(
                f"| vs champion (v{c.get('version', '?')}) | {_pct(c['candidate_accuracy'])}"
                f" | {_pct(c['baseline_accuracy'])} | {_pts(c['mean_diff'])}"
                f" | [{_pts(c['ci_low'])}, {_pts(c['ci_high'])}] | Δ ≥ 0 | "
                f"{'yes' if c['mean_diff'] >= 0 else 'no'} |"
            )
        else:
            lines.append("| vs champion | — | — | — | — | no champion yet | yes |")
        lines += [
            "",
            f"{d['seeds']} seed(s) × {d['n']} test examples, {d['n_boot']} paired bootstrap "
            "resamples over seeds and examples.",
        ]
        return "\n".join(lines) + "\n"


def decide(
    candidate_name: str,
    candidate_correct: np.ndarray,
    scratch_correct: np.ndarray,
    *,
    champion_correct: np.ndarray | None,
    margin: float = 0.0,
    seed: int = 0,
    n_boot: int = 2000,
    alpha: float = 0.05,
    champion_version: str | int | None = None,
    candidate_served_correct: np.ndarray | None = None,
) -> GateDecision:
    """Promote iff the candidate really beats scratch and is not worse than the champion.

    1. Scratch: the lower bound of the paired bootstrap CI of (candidate − scratch), over seeds and
       examples, must exceed ``margin`` (a fraction: 0.01 = one point).
    2. Champion (if any): the point estimate of (candidate − champion) on the same test examples
       must be ≥ 0. Deliberately the point estimate, not "not significantly worse": with the
       latter a chain of promotions, each a non-significant drop, could walk the served accuracy
       down. The significance requirement is carried by condition 1. The CI is reported too.

    ``candidate_served_correct`` (one row: the model that will actually be registered) is used
    for the champion comparison when given; otherwise the candidate's mean over seeds.
    """
    delta = paired_bootstrap(
        candidate_correct, scratch_correct, n_boot=n_boot, seed=seed, alpha=alpha
    )
    beats_scratch = delta["ci_low"] > margin
    level = round(100 * (1 - alpha))
    scratch_text = (
        f"{candidate_name} vs scratch {_pts(delta['mean_diff'])} points "
        f"({level}% CI {_pts(delta['ci_low'])} to {_pts(delta['ci_high'])}, "
        f"{delta['seeds']} seed(s) × {delta['n']} test examples)"
    )
    vs_champion: dict[str, Any] | None = None
    not_worse = True
    champion_text = "there is no champion yet"
    if champion_correct is not None:
        served = candidate_correct if candidate_served_correct is None else candidate_served_correct
        vs_champion = paired_bootstrap(
            served, champion_correct, n_boot=n_boot, seed=seed, alpha=alpha
        )
        if champion_version is not None:
            vs_champion["version"] = str(champion_version)
        not_worse = vs_champion["mean_diff"] >= 0.0
        who = f"champion v{champion_version}" if champion_version is not None else "the champion"
        champion_text = (
            f"vs {who} {_pts(vs_champion['mean_diff'])} points "
            f"({_pct(vs_champion['candidate_accuracy'])} vs "
            f"{_pct(vs_champion['baseline_accuracy'])})"
        )
    passed = bool(beats_scratch and not_worse)
    if passed:
        reason = (
            f"Promoted: {scratch_text}, lower bound above the margin {_pts(margin)}; "
            f"{champion_text}."
        )
    elif not beats_scratch:
        reason = (
            f"Not promoted: {scratch_text}, lower bound not above the margin {_pts(margin)}"
            + (f"; {champion_text}." if vs_champion is not None else ".")
        )
    else:
        reason = f"Not promoted: worse than the champion, {champion_text}; {scratch_text}."
    return GateDecision(
        passed=passed,
        verdict="promoted" if passed else "not promoted",
        reason=reason,
        candidate=candidate_name,
        delta_vs_scratch=delta,
        vs_champion=vs_champion,
        margin=float(margin),
    )


def _field(entry: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    """The first present key among ``names`` (only these keys are ever read)."""
    for name in names:
        if name in entry:
            return entry[name]
    return default


def _val_accuracy(entry: Mapping[str, Any]) -> float:
    value = _field(entry, "val_accuracy", "val_acc")
    if value is None:
        raise DataError(
            f"candidate {_label(entry)} has no val_accuracy: evaluate it on the validation split"
        )
    arr = np.asarray(value, dtype=np.float64)  # a float or one value per seed
    if arr.size == 0 or not np.isfinite(arr).all():
        raise DataError(
            f"candidate {_label(entry)} has val_accuracy {value!r}: need finite numbers"
        )
    return float(arr.mean())


def _label(entry: Mapping[str, Any]) -> str:
    return f"{_field(entry, 'strategy', default='?')}/{_field(entry, 'transfer_mode', 'mode', default='?')}"


def select_candidate(results: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The arm to put through the gate: highest mean validation accuracy.

    Ties (within 1e-9) go to fewer parameters (``n_params``), then the simpler transfer mode
    (linear_probe < finetune < lp_ft), then the name, so the choice is deterministic. Reads only
    ``strategy``, ``transfer_mode``/``mode``, ``val_accuracy``/``val_acc``, ``n_params`` and
    ``control``: the test split is never consulted. Scratch and control arms are skipped.
    """
    candidates = [
        r
        for r in results
        if _field(r, "strategy") not in NON_CANDIDATE_STRATEGIES
        and not _field(r, "control", default=False)
    ]
    if not candidates:
        raise DataError(
            "no transfer candidates to choose from: pass results with a strategy other than "
            "scratch/control and their val_accuracy"
        )

    def key(r: Mapping[str, Any]) -> tuple:
        return (
            -round(_val_accuracy(r), 9),
            _field(r, "n_params", default=math.inf),
            MODE_SIMPLICITY.get(str(_field(r, "transfer_mode", "mode", default="")), 99),
            _label(r),
        )

    return min(candidates, key=key)


def _fmt_ci(mean: float, low: float, high: float, *, signed: bool) -> str:
    f = _pts if signed else (lambda x: f"{100.0 * x:.1f}")
    return f"{f(mean)} [{f(low)}, {f(high)}]"


def summary_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    scratch_correct: np.ndarray | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> list[dict[str, str]]:
    """One display row per arm (strategy × mode), for the Prefect table and the Markdown report.

    Input rows: ``strategy``, ``transfer_mode``/``mode``, ``val_accuracy`` (float or per seed),
    ``test_correct`` ((seeds, examples) bool), optional ``delta`` (a ``paired_bootstrap`` dict,
    otherwise computed against ``scratch_correct``), ``pretrain_seconds``, ``finetune_seconds``.
    Accuracies are shown in percent, differences in points, intervals as [low, high].
    """
    level = round(100 * (1 - alpha))
    out: list[dict[str, str]] = []
    for r in rows:
        test = _field(r, "test_correct")
        if test is not None:
            acc = accuracy_ci(test, n_boot=n_boot, seed=seed, alpha=alpha)
            test_text = _fmt_ci(acc["accuracy"], acc["ci_low"], acc["ci_high"], signed=False)
        else:
            test_text = "—"
        delta = _field(r, "delta")
        is_scratch = _field(r, "strategy") == "scratch"
        if delta is None and test is not None and scratch_correct is not None and not is_scratch:
            delta = paired_bootstrap(test, scratch_correct, n_boot=n_boot, seed=seed, alpha=alpha)
        delta_text = (
            _fmt_ci(delta["mean_diff"], delta["ci_low"], delta["ci_high"], signed=True)
            if delta is not None
            else "—"
        )
        val = _field(r, "val_accuracy", "val_acc")
        pre = _field(r, "pretrain_seconds")
        fine = _field(r, "finetune_seconds")
        out.append(
            {
                "strategy": str(_field(r, "strategy", default="?")),
                "mode": str(_field(r, "transfer_mode", "mode", default="—")),
                "val acc %": f"{100.0 * _val_accuracy(r):.1f}" if val is not None else "—",
                f"test acc % [{level}% CI]": test_text,
                f"Δ vs scratch pts [{level}% CI]": delta_text,
                "pretrain s": f"{float(pre):.1f}" if pre is not None else "—",
                "fine-tune s": f"{float(fine):.1f}" if fine is not None else "—",
            }
        )
    return out
