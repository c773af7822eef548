"""The gate's protocol, pure: choose on the selection seeds, confirm on fresh seeds.

1. Selection (validation only): the transfer arm with the best mean validation accuracy over
   the selection seeds (``policy.select_candidate``), and scratch's configuration with the best
   mean validation accuracy among its search grid (``scratch``, ``scratch/lr=…,wd=…``).
2. Confirmation: both are trained again on seeds that played no part in selection (a new
   initialisation and a new k-shot draw; validation and test fixed). The gate decides on those
   seeds only, with the two-way interval over seeds and test images
   (``stats.two_way_interval``): the luck that made an arm win selection does not come along,
   and the interval carries seed variance and the test set's own sampling.
   ``warmstart.promotion.simulate`` measures its false promotions against the seed-only one.

``protocol_record`` is what the verdict reports: the seeds, how many configurations each side
searched, and the labels used.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from warmstart.contracts import (
    SCRATCH,
    TARGET_POOL_CONTROL,
    ArmResult,
    ArmScores,
    ArmSpec,
    Evaluation,
    SourceModel,
    TableRow,
)
from warmstart.errors import DataError
from warmstart.promotion.policy import select_candidate
from warmstart.promotion.stats import two_way_interval
from warmstart.reports.table import summarize


@dataclass(frozen=True)
class Plan:
    """What selection chose, and how many configurations each side compared."""

    candidate: ArmSpec  # the chosen transfer arm (one of its selection seeds' specs)
    scratch: ArmSpec  # scratch's chosen grid point
    arms_compared: int  # transfer configurations compared on validation
    scratch_configs: int  # scratch configurations compared on validation
    selection_seeds: list[int]
    val_means: dict[str, float]  # arm -> mean validation accuracy over the selection seeds


def _is_scratch(arm: str) -> bool:
    return arm == SCRATCH or arm.startswith(SCRATCH + "/")


def _val_only(arm: str, results: list[ArmResult]) -> ArmScores:
    spec = results[0].spec
    seeds = [r.seed for r in results]
    return ArmScores(arm, spec.strategy, spec.mode, seeds, [r.val_acc for r in results], [], [], [])


def plan_confirmation(results: list[ArmResult]) -> Plan:
    """Choose the transfer arm and scratch's configuration on validation (selection results)."""
    by_arm: dict[str, list[ArmResult]] = defaultdict(list)
    for r in results:
        if r.spec.phase == "selection":
            by_arm[r.arm].append(r)
    if SCRATCH not in by_arm:
        raise DataError("no scratch results among the selection results: train scratch too")
    scores = {arm: _val_only(arm, rs) for arm, rs in by_arm.items()}
    evaluation = Evaluation(arms=scores, y_test=[], test_index=[], classes=[])
    candidate = select_candidate(evaluation)
    means = {arm: float(np.mean(s.val_acc)) for arm, s in scores.items()}
    grid = [arm for arm in by_arm if _is_scratch(arm)]  # the default point first
    best_scratch = max(grid, key=lambda arm: (round(means[arm], 9), arm == SCRATCH))
    return Plan(
        candidate=by_arm[candidate.arm][0].spec,
        scratch=by_arm[best_scratch][0].spec,
        arms_compared=sum(s.is_candidate for s in scores.values()),
        scratch_configs=len(grid),
        selection_seeds=sorted({r.seed for r in by_arm[candidate.arm]}),
        val_means=means,
    )


def pool_control_arm(candidate: str) -> str:
    return f"{TARGET_POOL_CONTROL}/{candidate}"


def protocol_record(
    plan: Plan, confirmation: Evaluation | None, labels: dict[str, int]
) -> dict[str, Any]:
    """The verdict's account of the protocol (JSON-ready). ``confirmation`` None: no
    confirmation seeds were trained, and the gate must not promote."""
    record: dict[str, Any] = {
        "phase": "confirmation" if confirmation is not None else "selection",
        "selection_seeds": plan.selection_seeds,
        "arms_compared": plan.arms_compared,
        "transfer_configs": plan.arms_compared,
        "scratch_configs": plan.scratch_configs,
        "scratch_config": {"lr": plan.scratch.lr, "weight_decay": plan.scratch.weight_decay},
        "labels": dict(labels),
        "confirmation_seeds": [],
        "source_gain": None,
    }
    if confirmation is None:
        return record
    arm = confirmation.arms[plan.candidate.arm]
    record["confirmation_seeds"] = list(arm.seeds)
    control = confirmation.arms.get(pool_control_arm(plan.candidate.arm))
    if control is not None:
        record["source_gain"] = two_way_interval(arm.correct, control.correct)
    return record


def gate_evaluation(confirmation: Evaluation, plan: Plan, protocol: dict[str, Any]) -> Evaluation:
    """What the gate decides on: the chosen arm (carrying ``protocol``) and scratch, on the
    confirmation seeds only."""
    arm = plan.candidate.arm
    if arm not in confirmation.arms or SCRATCH not in confirmation.arms:
        raise DataError(
            f"the confirmation holds {sorted(confirmation.arms)}: it needs {arm} and scratch"
        )
    arms = {
        arm: replace(confirmation.arms[arm], protocol=protocol),
        SCRATCH: confirmation.arms[SCRATCH],
    }
    return replace(confirmation, arms=arms)


def confirmation_rows(confirmation: Evaluation, sources: dict[str, SourceModel]) -> list[TableRow]:
    """Table rows of the confirmation seeds, named ``… (confirm)``; their Δ interval is the
    gate's (two-way: seeds and test images), not the bootstrap of the selection rows."""
    arms = {
        k: v for k, v in confirmation.arms.items() if k == SCRATCH or k in _confirmed(confirmation)
    }
    rows = summarize(replace(confirmation, arms=arms), sources)
    scratch = confirmation.arms[SCRATCH].correct
    out = []
    for row in rows:
        if row.arm != SCRATCH and len(confirmation.arms[row.arm].seeds) > 1:
            t = two_way_interval(confirmation.arms[row.arm].correct, scratch)
            row = replace(row, delta_ci=(t["ci_low"], t["ci_high"]))
        out.append(replace(row, arm=f"{row.arm} (confirm)"))
    return out


def _confirmed(confirmation: Evaluation) -> set[str]:
    """Arms trained on the confirmation seeds (the pixel control is not one)."""
    scratch_seeds = confirmation.arms[SCRATCH].seeds
    return {k for k, v in confirmation.arms.items() if v.seeds == scratch_seeds}
