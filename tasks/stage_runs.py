"""Tracking around a training stage: its nested MLflow run, per-epoch metrics, one Prefect
progress artifact updated in place, and the run's end (FAILED with the reason on error).

Plain functions and a context manager used by the thin tasks in ``warmstart.tasks.pipeline``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TypeVar

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from warmstart import reports, storage, tracking
from warmstart.contracts import DatasetRef, Job, RunContext, SourceModel, StageRecord
from warmstart.errors import WarmstartError
from warmstart.params import PipelineParams
from warmstart.tasks import stale_runs

T = TypeVar("T")


# Flow runs that ended early (failed, crashed, cancelled): their training stages still running in
# other threads stop at their next epoch instead of training on for nothing.
STOPPED_FLOW_RUNS: set[str] = set()
# Flow runs this process has started (their parent MLflow run is open), for `abandon_flow_runs`.
ACTIVE_FLOW_RUNS: set[str] = set()


class StageStopped(WarmstartError):
    """A stage stopped because its flow run already ended (not the root cause)."""


class Progress:
    """Per-epoch reporting: MLflow metrics on the stage's run + a Prefect progress artifact.
    Raises ``StageStopped`` once the stage's flow run has ended early. From the first epoch on,
    system metrics are sampled onto the run (a reused stage trains no epoch and gets none)."""

    def __init__(self, run_id: str, total_epochs: int, description: str, flow_run_id: str = ""):
        self.run_id = run_id
        self.flow_run_id = flow_run_id
        self.total = max(1, total_epochs)
        self.artifact_id = create_progress_artifact(progress=0.0, description=description)
        self.monitor = None  # the system-metrics monitor (False: it could not start)

    def __call__(self, epoch: int, metrics: dict) -> None:
        if self.flow_run_id in STOPPED_FLOW_RUNS:
            raise StageStopped(f"stopped after epoch {epoch}: flow run {self.flow_run_id} ended")
        tracking.log_metrics(self.run_id, metrics, step=epoch)
        if self.monitor is None:
            self.monitor = system_metrics(self.run_id) or False
        update_progress_artifact(self.artifact_id, progress=min(100.0, 100.0 * epoch / self.total))

    def done(self) -> None:
        update_progress_artifact(self.artifact_id, progress=100.0)


@contextmanager
def stage_run(
    run: RunContext, name: str, params: dict, tags: dict, epochs: int
) -> Iterator[Progress]:
    """A nested MLflow run for one stage; FAILED (with the error as its reason) if it raises."""
    run_id = tracking.start_run(
        run.experiment_id,
        name,
        parent=run.run_id,
        params=params,
        tags={**tags, "warmstart.flow_run_id": run.flow_run_id},
    )
    progress = Progress(run_id, epochs, name, run.flow_run_id)
    try:
        yield progress
    except BaseException as exc:
        _finish(progress.monitor)
        tracking.end_run(run_id, "FAILED", reason=f"{type(exc).__name__}: {exc}")
        raise
    _finish(progress.monitor)
    tracking.end_run(run_id)
    progress.done()


def system_metrics(run_id: str):
    """MLflow's CPU/memory/disk/network (and GPU) monitor on one run, by explicit run id (no
    fluent active run, so safe in the task runner's threads); ``None`` if it cannot start."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import (  # deferred: heavy (mlflow)
            SystemMetricsMonitor,
        )

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop lines
        monitor = SystemMetricsMonitor(run_id, tracking_uri=tracking.tracking_uri())
        monitor.start()
        return monitor
    except Exception as exc:  # noqa: BLE001 - monitoring must never fail a training stage
        get_run_logger().warning("no system metrics for run %s: %s", run_id, exc)
        return None


def _finish(monitor) -> None:
    """Stop the monitor and flush its last samples (before the run ends)."""
    if monitor:
        try:
            monitor.finish()
        except Exception as exc:  # noqa: BLE001 - monitoring must never fail a training stage
            get_run_logger().warning("system metrics not flushed: %s", exc)


def log_stage(run_id: str, name: str, stage: StageRecord, label: str) -> None:
    """Say whether the stage was reused (its stored history is logged again) or resumed; log its
    checkpoint location, wall time and learning curves."""
    log = get_run_logger()
    if stage.reused:
        log.info("%s reused from %s (no training)", name, stage.checkpoint_uri)
        for row in stage.history:
            metrics = {k: v for k, v in row.items() if k != "epoch"}
            tracking.log_metrics(run_id, metrics, step=int(row.get("epoch", 0)))
    elif stage.resumed_from:
        log.info("%s resumed from epoch %s checkpoint", name, stage.resumed_from)
    tracking.set_tags(run_id, {"checkpoint_uri": stage.checkpoint_uri})
    tracking.log_metrics(run_id, {"seconds": stage.seconds})
    try:
        fig = reports.learning_curves_figure({label: list(stage.history)}, title=name)
        tracking.log_bytes(run_id, "learning_curves.png", reports.figure_png(fig))
    except Exception as exc:  # noqa: BLE001 - a plot must never fail a training stage
        log.warning("learning curves not plotted: %s", exc)


def open_pipeline_run(
    params: PipelineParams, target_name: str, flow_run_id: str, kind: str
) -> RunContext:
    """The parent MLflow run of one flow run (its experiment is the target's), after closing
    the runs a killed process left RUNNING (MLflow runs and Prefect flow runs)."""
    experiment = tracking.experiment_id(target_name)
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
        "source_spec": job.params.source,
        "target_spec": job.target.spec,
    }
    if source is not None:
        tags["source_dataset_hash"] = source.hash
        tags["source_spec"] = source.spec
    tracking.set_tags(run_id, tags)


def log_source_artifacts(run_id: str, source: SourceModel) -> None:
    """The images a pretraining made (GAN samples, reconstructions), as PNG artifacts."""
    for name, uri in source.artifacts.items():
        png = storage.get_bytes(storage.parse_s3_uri(uri))
        try:
            png = reports.artifact_png(name, png, label=f"pretraining: {source.label}")
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
    return tracking.end_runs_of_flow(flow_run_id, status, reason)


def abandon_flow_runs(reason: str, *, final: bool = False) -> list[str]:
    """For Ctrl-C / SIGTERM: stop this process's training stages at their next epoch, end the
    MLflow runs of its flow runs as KILLED and mark the Prefect flow runs Cancelled.

    Call it again with ``final`` just before the process exits: a flow whose stages stopped
    reports Failed, and that must not be the state it is left in."""
    for flow_run_id in sorted(ACTIVE_FLOW_RUNS):
        end_flow_runs(flow_run_id, "KILLED", reason)
        stale_runs.cancel_flow_run(flow_run_id, reason, over_final=final)
    return sorted(ACTIVE_FLOW_RUNS)
