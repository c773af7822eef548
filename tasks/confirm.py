"""Prefect tasks of the confirmation protocol: choose on validation, then score the fresh-seed
retraining of the chosen arm and scratch, which is all the gate reads (``promotion.protocol``).
Thin wrappers: the choice and the records are pure functions; these add logs and MLflow."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from warmstart import stages, tracking
from warmstart.contracts import (
    SCRATCH,
    ArmResult,
    ArmSpec,
    Evaluation,
    Job,
    SourceModel,
    TableRow,
)
from warmstart.promotion import protocol, recompute
from warmstart.promotion.metric import gate_metric
from warmstart.reports.verdict import labels_text, seed_span
from warmstart.stages.config import data_needs
from warmstart.stages.duplicates import weak_recall_notes
from warmstart.stages.training import confirmation_seeds, confirmation_specs, labels_used
from warmstart.tasks.pipeline import IO_RETRIES
from warmstart.tasks.promote import log_arm_runs


def needs_pool_control(plan: protocol.Plan, job: Job) -> bool:
    """The chosen arm pretrained on the source and the target pool (GAN, autoencoder with
    ``unsupervised_data="both"``): its gain is split by a target-pool-only control."""
    job, strategy = job.of(plan.candidate.strategy)  # the chosen arm's own source
    if not job.params.source_control or strategy is None or job.params.confirm_seeds < 2:
        return False
    if not job.source.needs_dataset:
        return False
    return data_needs(strategy, job.params) == (True, True)


@task(name="choose-on-validation", cache_policy=NO_CACHE, **IO_RETRIES)
def choose(results: list[ArmResult], job: Job) -> tuple[protocol.Plan, list[ArmSpec]]:
    """The arm and scratch's configuration, chosen on validation; the confirmation specs."""
    plan = protocol.plan_confirmation(results)
    specs = confirmation_specs(
        job.params, plan.candidate, plan.scratch, needs_pool_control(plan, job)
    )
    get_run_logger().info(
        "chosen on validation: %s (of %d transfer configurations) and %s (of %d scratch "
        "configurations); confirming on seeds %s",
        plan.candidate.arm,
        plan.arms_compared,
        plan.scratch.arm,
        plan.scratch_configs,
        seed_span(confirmation_seeds(job.params)),
    )
    counts = {
        "transfer_configs": plan.arms_compared,
        "scratch_configs": plan.scratch_configs,
        "confirm_seeds": job.params.confirm_seeds,
    }
    tracking.log_metrics(job.run.run_id, counts)
    return plan, specs


@task(name="evaluate-confirmation", cache_policy=NO_CACHE, **IO_RETRIES)
def evaluate_confirmation(
    plan: protocol.Plan,
    confirmed: list[ArmResult],
    sources: dict[str, SourceModel],
    job: Job,
    selection: Evaluation | None = None,
) -> tuple[Evaluation | None, list[TableRow], dict]:
    """The confirmation seeds on test: the gate's evaluation (the chosen arm carrying the
    protocol, and scratch), their table rows, and the protocol record. Without confirmation
    seeds the evaluation is None (the gate then uses the selection's, and cannot promote).
    With ``selection`` (the selection seeds' evaluation), ``predictions.parquet`` is replaced
    by every seed of both phases, the gate's rows marked (``promotion.recompute``)."""
    seeds = sorted({r.seed for r in confirmed}) or plan.selection_seeds
    mine, _ = job.of(plan.candidate.strategy)  # the labels its own source already learned
    labels = labels_used(mine, sorted(set(plan.selection_seeds) | set(seeds)))
    if not confirmed:
        record = guard_record(protocol.protocol_record(plan, None, labels), job)
        _log_predictions(job, selection, None, plan)
        return None, [], record
    evaluation = stages.evaluate(confirmed, job)
    _log_predictions(job, selection, evaluation, plan)
    record = guard_record(protocol.protocol_record(plan, evaluation, labels), job)
    rows = protocol.confirmation_rows(evaluation, sources)
    log_arm_runs(evaluation, confirmed)
    tracking.log_metrics(
        job.run.run_id,
        {"labels_per_model": labels["per_model"], "labels_distinct": labels["distinct"]},
    )
    get_run_logger().info("%s", labels_text(labels))
    return protocol.gate_evaluation(evaluation, plan, record), rows, record


def guard_record(record: dict, job: Job) -> dict:
    """The protocol record with what the leakage guard changed: the validation and test images
    every arm was evaluated without (0 included), and where its near-duplicate recall is weak."""
    removed = {"validation": job.split.removed_val, "test": job.split.removed_test}
    notes = list(weak_recall_notes(job.target.size))
    return {**record, "overlap_removed": {**removed, "notes": notes}}


def _log_predictions(
    job: Job, selection: Evaluation | None, confirmation: Evaluation | None, plan: protocol.Plan
) -> None:
    """Selection and confirmation predictions in one ``predictions.parquet``; the gate's rows
    (the chosen arm and scratch of the phase it decides on) marked, with the metric it compared
    (an unconfirmed run's gate reads plain accuracy: ``policy.scratch_interval``)."""
    if selection is None:
        return
    gate = (plan.candidate.arm, SCRATCH)
    frames = [recompute.predictions_frame(selection, "selection", None if confirmation else gate)]
    if confirmation is not None:
        chosen = gate_metric(job, confirmation)
        frames.append(recompute.predictions_frame(confirmation, "confirmation", gate, chosen))
    tracking.log_bytes(job.run.run_id, "predictions.parquet", recompute.to_parquet(*frames))


def with_protocol(evaluation: Evaluation, plan: protocol.Plan, record: dict) -> Evaluation:
    """The selection's evaluation with the protocol on the chosen arm (``confirm_seeds=0``)."""
    return protocol.gate_evaluation(evaluation, plan, record)
