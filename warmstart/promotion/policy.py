"""The promotion policy, pure: which arm is the candidate, which seed would be served, and
whether it may replace the champion. No I/O, so every verdict can be recomputed from the arrays.

The rules, in the order they are applied (the first that applies decides):

1. Selection uses validation only: the candidate is the transfer arm with the highest mean
   validation accuracy (``is_candidate``: never scratch, never a control). The test split is
   read once, by the gate, after the choice is made; choosing on test would make the gate's
   interval optimistic.
2. The served model is the candidate's seed with the best validation accuracy: one model is
   registered, so the champion comparison uses that model's row, not the mean over seeds.
3. A champion that cannot be scored on this run's test examples (different input shape or
   classes, unloadable artifact) blocks promotion: replacing a model we cannot compare with
   would be promotion without evidence.
4. Confirmation: in the pipeline the candidate carries its ``protocol``: the gate decides on
   the confirmation seeds only (fresh initialisation and k-shot draw, see ``protocol``). A run
   without confirmation seeds (``confirm_seeds=0``) is never promoted (rule ``unconfirmed``).
   Scratch: the lower bound of the CI of (candidate − scratch) must exceed ``margin`` (a
   fraction: 0.01 = one point): on confirmation seeds the two-way interval over seeds and test
   images (``stats.two_way_interval``; its calibration is measured in ``simulate``), the paired
   bootstrap over seeds and examples for bare arrays without a protocol.
5. Champion (if any): the point estimate of (served − champion) on the same test examples must
   be ≥ 0. Deliberately the point estimate, not "not significantly worse": with the latter a
   chain of promotions, each a non-significant drop, could walk the served accuracy down. The
   significance requirement is carried by rule 4. The CI is reported too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from warmstart.contracts import SCRATCH, ArmScores, Evaluation
from warmstart.errors import DataError
from warmstart.promotion.classes import CLASS_DROP
from warmstart.promotion.stats import (
    ALPHA,
    BOOT_SEED,
    N_BOOT,
    paired_bootstrap,
    seed_t_interval,
    two_way_interval,
)
from warmstart.reports.verdict import (
    decision_markdown,
    drops_sentence,
    method_name,
    pct,
    protocol_sentence,
    protocol_tags,
    pts,
    test_images_text,
)

PROMOTED, NOT_PROMOTED = "promoted", "not promoted"
UNCONFIRMED = "unconfirmed"  # the arm was never trained on fresh seeds: no promotion
# Simpler transfer modes first: fewer trainable parameters / fewer stages win a validation tie.
MODE_SIMPLICITY = {"linear_probe": 0, "finetune": 1, "lp_ft": 2}
# The interval on confirmation seeds: "two-way" (seeds and test images, the gate's since issue 21);
# "seed-t" (seeds only, what it used before) and "bootstrap" (seeds × images resampled, crossed)
# are kept for the calibration study (``simulate``), which is what chose "two-way".
INTERVALS = {"two-way": two_way_interval, "seed-t": seed_t_interval, "bootstrap": paired_bootstrap}
INTERVAL = "two-way"


@dataclass(frozen=True)
class Champion:
    """The version serving now, scored on this run's test examples, or why it could not be."""

    version: str
    correct: np.ndarray | None = None  # per test example (one row)
    error: str | None = None  # why it could not be scored (then ``correct`` is None)
    not_applicable: str | None = None  # why it is not compared (other data or split): no block


@dataclass(frozen=True)
class Decision:
    """A promotion verdict with the numbers behind it (fractions; the text shows points).

    ``reason`` never repeats the verdict, so ``f"{verdict}: {reason}"`` reads once.
    """

    passed: bool
    verdict: str  # promoted | not promoted
    rule: str  # the rule that decided: promoted | below-margin | worse-than-champion | …
    reason: str  # one sentence with the numbers
    candidate: str  # the arm
    served_seed: int
    delta_vs_scratch: dict[str, Any]
    vs_champion: dict[str, Any] | None
    champion_version: str | None
    margin: float
    champion_not_applicable: str | None = None  # why the champion was not compared
    protocol: dict[str, Any] | None = None  # seeds, configurations compared, labels used
    # classes the candidate serves more than classes.CLASS_DROP below scratch (``classes``)
    class_drops: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (plain floats, ints, strings)."""
        return asdict(self)

    def tags(self) -> dict[str, str]:
        """The verdict and its CI numbers as MLflow tags (runs and model versions)."""
        d = self.delta_vs_scratch
        tags = {
            "gate_verdict": self.verdict,
            "gate_rule": self.rule,
            "gate_reason": self.reason,
            "gate_candidate": self.candidate,
            "gate_margin": f"{self.margin:.4f}",
            "gate_delta_vs_scratch": f"{d['mean_diff']:.4f}",
            "gate_delta_ci_low": f"{d['ci_low']:.4f}",
            "gate_delta_ci_high": f"{d['ci_high']:.4f}",
            "gate_interval": d.get("method", "bootstrap"),
        }
        if self.vs_champion is not None:
            tags["gate_delta_vs_champion"] = f"{self.vs_champion['mean_diff']:.4f}"
            tags["gate_champion_version"] = str(self.champion_version)
        if self.champion_not_applicable:
            tags["gate_champion_not_applicable"] = self.champion_not_applicable
        return tags | protocol_tags(self.protocol)

    def to_markdown(self) -> str:
        """The verdict as Markdown (``reports.verdict.decision_markdown``)."""
        return decision_markdown(self, self.delta_vs_scratch.get("alpha", ALPHA))


def _mean_val(arm: ArmScores) -> float:
    arr = np.asarray(arm.val_acc, dtype=np.float64)
    if arr.size == 0 or not np.isfinite(arr).all():
        raise DataError(
            f"arm {arm.arm} has validation accuracies {arm.val_acc!r}: need finite numbers, one "
            "per seed (evaluate it on the validation split)"
        )
    return float(arr.mean())


def select_candidate(evaluation: Evaluation) -> ArmScores:
    """The arm to put through the gate: highest mean validation accuracy (rule 1).

    Ties (within 1e-9) go to the simpler transfer mode (linear_probe < finetune < lp_ft), then
    the name, so the choice is deterministic. Reads only ``arm``, ``mode`` and ``val_acc``.
    """
    candidates = [a for a in evaluation.arms.values() if a.is_candidate]
    if not candidates:
        raise DataError(
            "no transfer candidates to choose from: the evaluation holds only scratch and "
            "controls; run at least one strategy × transfer mode"
        )
    return min(
        candidates,
        key=lambda a: (-round(_mean_val(a), 9), MODE_SIMPLICITY.get(a.mode, 99), a.arm),
    )


def served_index(arm: ArmScores) -> int:
    """Which seed of the arm would be registered: the best on validation (rule 2)."""
    _mean_val(arm)
    return int(np.argmax(arm.val_acc))


def _reason(rule: str, scratch: str, champion: str, margin: float) -> str:
    """The sentence behind a verdict (without the verdict itself)."""
    if rule == UNCONFIRMED:
        return (
            f"{scratch}; no confirmation seeds (confirm_seeds=0), so selection luck is inside "
            "the interval: rerun with confirm_seeds >= 2 (5 by default) to be gated."
        )
    if rule == "champion-incomparable":
        return f"{champion}; {scratch}."
    if rule == "below-margin":
        tail = f"; {champion}." if champion else "."
        return f"{scratch}, lower bound not above the margin {pts(margin)}{tail}"
    if rule == "worse-than-champion":
        return f"worse than the champion, {champion}; {scratch}."
    return f"{scratch}, lower bound above the margin {pts(margin)}; {champion or 'there is no champion yet'}."


def _vs_champion(
    served: np.ndarray, champion: Champion, stats: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """The champion comparison and its text ("vs champion v3 -0.4 points (95.3% vs 95.8%)")."""
    who = f"champion v{champion.version}"
    if champion.correct is None:
        why = champion.error or "no predictions"
        return None, f"the current {who} cannot be compared on this test data ({why})"
    result = paired_bootstrap(served, np.asarray(champion.correct)[None, :], **stats)
    result["version"] = str(champion.version)
    text = (
        f"vs {who} {pts(result['mean_diff'])} points "
        f"({pct(result['candidate_accuracy'])} vs {pct(result['baseline_accuracy'])})"
    )
    return result, text


def _champion_part(
    served: np.ndarray, champion: Champion | None, stats: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """The champion comparison (paired bootstrap on the served seed) and its text, if any."""
    if champion is None:
        return None, ""
    if champion.not_applicable:
        return None, f"champion v{champion.version} not compared ({champion.not_applicable})"
    boot = {k: stats[k] for k in ("n_boot", "seed", "alpha")}
    return _vs_champion(served, champion, boot)


def decide(
    candidate: ArmScores,
    scratch: ArmScores,
    *,
    margin: float = 0.0,
    champion: Champion | None = None,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    alpha: float = ALPHA,
    blocked: str | None = None,
    interval: str = INTERVAL,
    weights: np.ndarray | None = None,
    class_drops: list[dict[str, Any]] | None = None,
) -> Decision:
    """Promote iff the served seed may replace the champion and the arm really beats scratch
    (rules 2-5 of this module). ``blocked`` (e.g. the leakage guard's line) refuses whatever the
    numbers say; a champion with ``not_applicable`` set is reported but not compared.
    ``interval`` names the interval on confirmation seeds (``INTERVALS``); ``class_drops``
    (``classes.class_drops``) are named at the end of the reason, whatever the verdict."""
    if candidate.arm == SCRATCH or not candidate.is_candidate:
        raise DataError(f"{candidate.arm} is a baseline, not a candidate: pass a transfer arm")
    if interval not in INTERVALS:
        raise DataError(f"interval={interval!r}: use one of {sorted(INTERVALS)}")
    stats = {"n_boot": n_boot, "seed": seed, "alpha": alpha, "interval": interval}
    delta, scratch_text = _vs_scratch(candidate, scratch, stats, weights)
    protocol = candidate.protocol or None
    best = served_index(candidate)
    served = np.asarray(candidate.correct, dtype=bool)[best : best + 1]
    skip = champion.not_applicable if champion is not None else None
    vs, champion_text = _champion_part(served, champion, stats)
    incomparable = champion is not None and not skip and vs is None
    rule = _rule(blocked, protocol, incomparable, delta["ci_low"] > margin, vs)
    passed = rule == PROMOTED
    return Decision(
        passed=passed,
        verdict=PROMOTED if passed else NOT_PROMOTED,
        rule=rule,
        reason=(
            f"{blocked}; {scratch_text}."
            if blocked
            else _reason(rule, scratch_text, champion_text, margin)
        )
        + _tail(protocol, class_drops),
        candidate=candidate.arm,
        served_seed=int(candidate.seeds[best]) if candidate.seeds else best,
        delta_vs_scratch=delta,
        vs_champion=vs,
        champion_version=champion.version if champion is not None else None,
        margin=float(margin),
        champion_not_applicable=skip,
        protocol=protocol,
        class_drops=list(class_drops or []),
    )


def _rule(
    blocked: str | None,
    protocol: dict[str, Any] | None,
    incomparable: bool,
    above_margin: bool,
    vs: dict[str, Any] | None,
) -> str:
    """The rule that decides (rules 3-5, the first that applies), or ``promoted``."""
    if blocked:
        return "blocked"
    if protocol is not None and protocol.get("phase") != "confirmation":
        return UNCONFIRMED
    if incomparable:
        return "champion-incomparable"
    if not above_margin:
        return "below-margin"
    if vs is not None and vs["mean_diff"] < 0.0:
        return "worse-than-champion"
    return PROMOTED


def _tail(protocol: dict[str, Any] | None, class_drops: list[dict[str, Any]] | None) -> str:
    """The reason's closing sentences: the protocol, then the classes below scratch."""
    tail = " " + protocol_sentence(protocol) if protocol else ""
    return tail + (" " + drops_sentence(class_drops, CLASS_DROP) if class_drops else "")


def scratch_interval(
    candidate_correct: np.ndarray,
    scratch_correct: np.ndarray,
    *,
    confirmed: bool,
    interval: str = INTERVAL,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    alpha: float = ALPHA,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """The gate's CI of (candidate − scratch): ``INTERVALS[interval]`` on confirmation seeds,
    the paired bootstrap otherwise (such a run is never promoted; it reads accuracy only).
    ``metric`` in the result names what was compared: ``balanced_accuracy`` when ``weights``
    (the gate passes ``metric.weights``' class-balanced ones), else ``accuracy``.
    ``recompute_verdict`` calls this too, so a downloaded artifact gives the verdict's numbers."""
    cand = np.asarray(candidate_correct, dtype=bool)
    base = np.asarray(scratch_correct, dtype=bool)
    if confirmed and interval != "bootstrap":
        result = INTERVALS[interval](cand, base, alpha=alpha, weights=weights)
        return result | {"metric": "accuracy" if weights is None else "balanced_accuracy"}
    result = paired_bootstrap(cand, base, n_boot=n_boot, seed=seed, alpha=alpha)
    return result | {"metric": "accuracy"}


def _vs_scratch(
    candidate: ArmScores, scratch: ArmScores, stats: dict[str, Any], weights: Any = None
) -> tuple[dict[str, Any], str]:
    """Δ vs scratch and its text (``scratch_interval``; of balanced accuracy when given its
    per-example ``weights``)."""
    confirmed = (candidate.protocol or {}).get("phase") == "confirmation"
    delta = scratch_interval(
        candidate.correct, scratch.correct, confirmed=confirmed, weights=weights, **stats
    )
    if confirmed:
        over = f"{method_name(delta)}, {delta['seeds']} confirmation seeds"
        over += ", balanced accuracy" if weights is not None else ""
    else:
        over = f"{delta['seeds']} seed(s)"
    level = round(100 * (1 - stats["alpha"]))
    text = (
        f"{candidate.arm} vs scratch {pts(delta['mean_diff'])} points "
        f"({level}% CI {pts(delta['ci_low'])} to {pts(delta['ci_high'])}, "
        f"{over} × {test_images_text(delta)})"
    )
    return delta, text
