"""Per-epoch reporting of a training stage, everywhere a user watches: MLflow metrics on the
stage's run, one Prefect progress artifact updated in place, one concise INFO line per epoch in
the flow run's logs, and events for in-process listeners (the CLI's live display)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from warmstart import outage, timing, tracking
from warmstart.errors import WarmstartError

# Flow runs that ended early (failed, crashed, cancelled): their training stages still running in
# other threads stop at their next epoch instead of training on for nothing.
STOPPED_FLOW_RUNS: set[str] = set()
# Marks the per-epoch log records, so a console that shows its own progress can leave them out.
EPOCH_RECORD = "warmstart_epoch"


class StageStopped(WarmstartError):
    """A stage stopped because its flow run already ended (not the root cause)."""


@dataclass(frozen=True)
class StageEvent:
    """What a listener hears: a stage started, finished an epoch, ended, or the process is
    abandoning its runs (Ctrl-C/SIGTERM). ``key`` is the stage's MLflow run id."""

    kind: str  # "start" | "epoch" | "done" | "failed" | "abandon"
    key: str = ""
    label: str = ""
    epoch: int = 0
    total: int = 0
    summary: str = ""
    split: dict | None = None  # "done": seconds per phase (``timing.StageClock.split``)


Listener = Callable[[StageEvent], None]
LISTENERS: list[Listener] = []


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Hear every stage of this process while the block runs (called in the stages' threads)."""
    LISTENERS.append(listener)
    try:
        yield
    finally:
        LISTENERS.remove(listener)


def notify(event: StageEvent) -> None:
    for listener in list(LISTENERS):
        try:
            listener(event)
        except Exception:  # noqa: BLE001, S110 - a display must never fail a training stage
            pass


def epoch_summary(metrics: dict) -> str:
    """``loss 0.412 · val 91.3%`` from an epoch's row (pretraining: its own losses, accuracy)."""
    parts = []
    loss = metrics.get("train_loss", metrics.get("loss"))
    if loss is not None:
        parts.append(f"loss {loss:.3f}")
    parts += [f"{k} {metrics[k]:.3f}" for k in ("d_loss", "g_loss") if k in metrics]
    if "val_acc" in metrics:
        parts.append(f"val {100 * metrics['val_acc']:.1f}%")
    elif "acc" in metrics:
        parts.append(f"acc {100 * metrics['acc']:.1f}%")
    return " · ".join(parts)


def stage_label(params: dict, kind: str) -> str:
    """What a person calls a stage: ``supervised/finetune seed 1`` or ``pretrain gan``; a sweep
    adds the k it trains at."""
    if "arm" in params:
        label = f"{params['arm']} seed {params['seed']}"
        return f"{label} k={params['k_shot']}" if kind == "label_efficiency" else label
    return f"pretrain {params.get('strategy', '?')}"


# Per-epoch MLflow metrics are sent in one batch at most this often, and at the stage's end (a
# metric is also the run's sign of life: keep this far below WARMSTART_STALE_AFTER_S). The
# progress card is updated at most this often too, and at the last epoch.
FLUSH_EVERY_S = 10.0
CARD_EVERY_S = 2.0


class Progress:
    """The ``report`` callback of one stage. Raises ``StageStopped`` once the stage's flow run
    has ended early. From the first epoch on, system metrics are sampled onto the run (a reused
    stage trains no epoch and gets none). Epoch metrics are buffered and flushed together
    (``flush``): every ``FLUSH_EVERY_S`` seconds and when the stage ends."""

    def __init__(self, run_id: str, total_epochs: int, label: str, flow_run_id: str = "") -> None:
        self.run_id = run_id
        self.flow_run_id = flow_run_id
        self.label = label
        self.total = total_epochs  # 0: a stage that trains nothing (e.g. loads published weights)
        self.epochs = 0
        self.pending: list[tuple[int, dict]] = []
        self.flushed_at = self.carded_at = time.monotonic()
        self.artifact_id = create_progress_artifact(progress=0.0, description=f"{label}: starting")
        self.monitor = None  # the system-metrics monitor (False: it could not start)
        notify(StageEvent("start", run_id, label, 0, self.total))

    def __call__(self, epoch: int, metrics: dict) -> None:
        if self.flow_run_id in STOPPED_FLOW_RUNS:
            raise StageStopped(f"stopped after epoch {epoch}: flow run {self.flow_run_id} ended")
        with timing.span("log"):
            self._report(epoch, metrics)

    def _report(self, epoch: int, metrics: dict) -> None:
        self.pending.append((epoch, dict(metrics)))
        now = time.monotonic()
        if now - self.flushed_at >= FLUSH_EVERY_S:
            self.flush()
        if self.monitor is None:
            self.monitor = system_metrics(self.run_id) or False
        self.epochs += 1
        line = f"epoch {epoch}/{self.total}"
        summary = epoch_summary(metrics)
        line += f" · {summary}" if summary else ""
        get_run_logger().info("%s · %s", self.label, line, extra={EPOCH_RECORD: True})
        if now - self.carded_at >= CARD_EVERY_S or epoch >= self.total:
            self.carded_at = now
            update_progress_artifact(
                self.artifact_id,
                progress=min(100.0, 100.0 * epoch / max(1, self.total)),
                description=f"{self.label} · {line}",
            )
        notify(StageEvent("epoch", self.run_id, self.label, epoch, self.total, summary))

    def flush(self) -> None:
        """Send the buffered epoch metrics to the stage's run (one request per 1000 values)."""
        rows, self.pending = self.pending, []
        self.flushed_at = time.monotonic()
        if rows:
            tracking.log_metric_rows(self.run_id, rows)

    def done(self, split: dict | None = None) -> None:
        """The stage ended well: the artifact full (with where its time went), listeners told."""
        if self.epochs:
            what = f"{self.epochs} epoch(s) trained"
        else:
            what = "reused, nothing trained" if self.total else "loaded, nothing to train"
        card = f"{self.label}: {what}" + (f"; {timing.card_line(split)}" if split else "")
        update_progress_artifact(self.artifact_id, progress=100.0, description=card)
        notify(StageEvent("done", self.run_id, self.label, self.epochs, self.total, what, split))

    def failed(self, reason: str) -> None:
        notify(StageEvent("failed", self.run_id, self.label, self.epochs, self.total, reason))


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


def finish_monitor(monitor) -> None:
    """Stop the monitor and flush its last samples (before the run ends). In an MLflow outage
    the flush goes on in the background: its requests must not outlast the retry budget."""
    if monitor and outage.MLFLOW.since() is not None:
        threading.Thread(target=monitor.finish, name="metrics-flush", daemon=True).start()
    elif monitor:
        try:
            monitor.finish()
        except Exception as exc:  # noqa: BLE001 - monitoring must never fail a training stage
            get_run_logger().warning("system metrics not flushed: %s", exc)
