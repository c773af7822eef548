"""Tracking around a training stage: its nested MLflow run, per-epoch reporting
(``stage_progress.Progress``), and the run's end (FAILED with the reason on error).

Plain functions and a context manager used by the thin tasks in ``warmstart.tasks.pipeline``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

from prefect import get_run_logger
from prefect.context import TaskRunContext

from warmstart import storage, timing, tracking
from warmstart.contracts import DatasetRef, Job, RunContext, SourceModel, StageRecord
from warmstart.errors import TrackingError
from warmstart.params import PipelineParams
from warmstart.reports import plots
from warmstart.tasks import stale_runs
from warmstart.tasks.stage_progress import (  # noqa: F401 - StageStopped: re-exported for flows
    STOPPED_FLOW_RUNS,
    Progress,
    StageEvent,
    StageStopped,
    finish_monitor,
    notify,
    stage_label,
)

T = TypeVar("T")


# Flow runs this process has started (their parent MLflow run is open), for `abandon_flow_runs`.
ACTIVE_FLOW_RUNS: set[str] = set()
# Held while a stage opens its MLflow run and while an interrupt ends a flow run's runs: a stage
# that was waiting for its `gpu` slot when Ctrl-C/SIGTERM came must not open a run afterwards
# (the process exits at once, and that run would stay RUNNING).
_OPENING = threading.Lock()


@contextmanager
def stage_run(
    run: RunContext, name: str, params: dict, tags: dict, epochs: int
) -> Iterator[Progress]:
    """A nested MLflow run for one stage; FAILED (with the error as its reason) if it raises.
    A stage of a flow run already stopped (interrupted, failed) opens no run. Where the stage's
    time went (``warmstart.timing``) ends on its run as ``time_<phase>_s`` metrics and on its
    progress card."""
    clock = timing.StageClock(waited=waited_for_slot())
    with timing.clocked(clock):
        with timing.span("log"):
            progress = _open(run, name, params, tags, epochs)
        try:
            yield progress
            with timing.span("log"):
                finish_monitor(progress.monitor)
                progress.monitor = False
                progress.flush()
            split = clock.split()
            tracking.log_metrics(progress.run_id, {f"time_{k}_s": v for k, v in split.items()})
        except BaseException as exc:
            _failed(progress, exc)
            raise
        tracking.end_run(progress.run_id)
        progress.done(split)


def _open(run: RunContext, name: str, params: dict, tags: dict, epochs: int) -> Progress:
    with _OPENING:
        if run.flow_run_id in STOPPED_FLOW_RUNS:
            raise StageStopped(f"not started: flow run {run.flow_run_id} has ended")
        run_id = tracking.start_run(
            run.experiment_id,
            name,
            parent=run.run_id,
            params=params,
            tags={**tags, "warmstart.flow_run_id": run.flow_run_id},
        )
    return Progress(run_id, epochs, stage_label(params, run.kind), run.flow_run_id)


def _failed(progress: Progress, exc: BaseException) -> None:
    """End a failed stage's run FAILED with the reason (its buffered metrics sent first)."""
    finish_monitor(progress.monitor)
    reason = f"{type(exc).__name__}: {exc}"
    try:
        progress.flush()
        tracking.end_run(progress.run_id, "FAILED", reason=reason)
    except TrackingError:  # MLflow down: the stage's own error is the one to raise
        tracking.record_unclosed([progress.run_id], "FAILED", reason)
    progress.failed(reason)


def waited_for_slot() -> float:
    """Seconds this task run waited between its submission and now (its body starting): for a
    training task, a free worker thread and then its ``gpu`` slot. 0 outside a task run."""
    ctx = TaskRunContext.get()
    created = getattr(getattr(ctx, "task_run", None), "created", None)
    if created is None:
        return 0.0
    return max(0.0, (datetime.now(UTC) - created).total_seconds())


def log_stage(
    run_id: str, name: str, stage: StageRecord, label: str, metrics: dict | None = None
) -> None:
    """Say whether the stage was reused (its stored history is logged again, in one batch) or
    resumed; log its checkpoint location, wall time (and ``metrics``) and learning curves."""
    log = get_run_logger()
    rows = []
    if stage.reused:
        log.info("%s reused from %s (no training)", name, stage.checkpoint_uri)
        rows = [
            (int(row.get("epoch", 0)), {k: v for k, v in row.items() if k != "epoch"})
            for row in stage.history
        ]
    elif stage.resumed_from:
        log.info("%s resumed from epoch %s checkpoint", name, stage.resumed_from)
    tracking.set_tags(run_id, {"checkpoint_uri": stage.checkpoint_uri})
    tracking.log_metric_rows(run_id, [*rows, (0, {"seconds": stage.seconds, **(metrics or {})})])
    try:
        fig = plots.learning_curves_figure({label: list(stage.history)}, title=name)
        tracking.log_bytes(run_id, "learning_curves.png", plots.figure_png(fig))
    except Exception as exc:  # noqa: BLE001 - a plot must never fail a training stage
        log.warning("learning curves not plotted: %s", exc)


def open_pipeline_run(
    params: PipelineParams, target_name: str, flow_run_id: str, kind: str
) -> RunContext:
    """The parent MLflow run of one flow run (its experiment is the target's), after closing
    the runs a killed process left RUNNING (MLflow runs and Prefect flow runs)."""
    experiment = tracking.experiment_id(target_name)
    recorded = tracking.close_recorded_runs()
    if recorded:
        get_run_logger().warning(
            "ended %d run(s) left open by an MLflow outage: %s", len(recorded), recorded
        )
    older_than = stale_runs.stale_after_s()
    closed = tracking.close_stale_runs(experiment, older_than)
    closed += stale_runs.close_stale_flow_runs(older_than, exclude=flow_run_id)
    if closed:
        get_run_logger().warning(
            "closed %d stale run(s) silent for over %.0f s: %s", len(closed), older_than, closed
        )
    run_id = tracking.start_run(
        experiment,
        f"{kind.replace('_', '-')}-{flow_run_id[:8]}",
        params=params.model_dump(),
        tags={"warmstart.flow_run_id": flow_run_id, "warmstart.kind": kind},
    )
    ACTIVE_FLOW_RUNS.add(flow_run_id)
    return RunContext(experiment_id=experiment, run_id=run_id, flow_run_id=flow_run_id, kind=kind)


def log_pipeline_inputs(job: Job, source: DatasetRef | None) -> None:
    """Datasets as run inputs with their digests; split sizes; provenance hashes as tags."""
    run_id, split = job.run.run_id, job.split
    datasets = {"target": job.target, **({"source": source} if source else {})}
    tracking.log_dataset_inputs(run_id, datasets)
    tracking.log_metrics(
        run_id, {"target_train": split.train, "target_val": split.val, "target_test": split.test}
    )
    tags = {
        "target_dataset_hash": job.target.hash,
        "split_hash": split.hash,
        "source_spec": ", ".join(s.spec for s in job.plan.sources),
        "target_spec": job.target.spec,
    }
    if source is not None:
        tags["source_dataset_hash"] = source.hash
    if source is not None and len(job.plan.sources) == 1:
        tags["source_spec"] = source.spec
    tracking.set_tags(run_id, tags)


def log_source_artifacts(run_id: str, source: SourceModel) -> None:
    """The images a pretraining made (GAN samples, reconstructions), as PNG artifacts."""
    for name, uri in source.artifacts.items():
        png = storage.get_bytes(storage.parse_s3_uri(uri))
        try:
            png = plots.artifact_png(name, png, label=f"pretraining: {source.label}")
        except Exception as exc:  # noqa: BLE001 - a caption must never fail a training stage
            get_run_logger().warning("%s not captioned: %s", name, exc)
        tracking.log_bytes(run_id, f"{name}.png", png)


def with_run_id(record: T, run_id: str) -> T:
    """The stage product, with the MLflow run that tracked its training."""
    if record.stage is None:  # type: ignore[attr-defined]
        return record
    return replace(record, stage=replace(record.stage, mlflow_run_id=run_id))  # type: ignore[attr-defined]


def end_flow_runs(flow_run_id: str, status: str, reason: str) -> list[str]:
    """End every MLflow run (parent and stages) of one flow run still RUNNING, and make its
    stages still training stop at their next epoch: for the flow's failure, crash and
    cancellation hooks."""
    STOPPED_FLOW_RUNS.add(flow_run_id)
    try:
        return tracking.end_runs_of_flow(flow_run_id, status, reason)
    except TrackingError:  # recorded locally: the next `warmstart up` or run ends them
        return tracking.record_unclosed(tracking.open_runs(flow_run_id), status, reason)


def abandon_flow_runs(reason: str, *, final: bool = False) -> list[str]:
    """For Ctrl-C / SIGTERM: stop this process's training stages at their next epoch, end the
    MLflow runs of its flow runs as KILLED and mark the Prefect flow runs Cancelled.

    Call it again with ``final`` just before the process exits: a flow whose stages stopped
    reports Failed, and that must not be the state it is left in."""
    notify(StageEvent("abandon"))  # a live display stops first (the process exits right after)
    locked = _OPENING.acquire(timeout=10)  # a stage opening its run finishes first
    try:
        for flow_run_id in sorted(ACTIVE_FLOW_RUNS):
            end_flow_runs(flow_run_id, "KILLED", reason)
            stale_runs.cancel_flow_run(flow_run_id, reason, over_final=final)
    finally:
        if locked:
            _OPENING.release()
    return sorted(ACTIVE_FLOW_RUNS)
