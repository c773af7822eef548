"""Experiments and runs, by explicit id: stages log from parallel threads, so nothing here uses
MLflow's fluent active-run state. Params and tags never carry secrets.

Every run ends: ``end_run`` closes it FINISHED, FAILED or KILLED with a ``warmstart.end_reason``
tag, and ``close_stale_runs`` closes, as KILLED, runs left RUNNING by a process that died. A run
counts as alive while it or one of its child runs shows activity: its start, a metric (each
epoch logs some), a ``heartbeat`` tag, or a child's start, metric, heartbeat or end.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from warmstart.errors import ConfigError, DataError
from warmstart.settings import redact, secret_values
from warmstart.tracking.client import client, errors

if TYPE_CHECKING:
    from mlflow.entities import Run

EXPERIMENT_PREFIX = "warmstart/"
MODEL_PREFIX = "warmstart-"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
MAX_TAG_LENGTH = 5000  # and on a tag value
BATCH = 90  # params per log_batch call (MLflow accepts 100)
METRICS_BATCH = 1000  # metrics per log_batch call (MLflow's limit)
HEARTBEAT_TAG = "warmstart.heartbeat"  # epoch milliseconds of the last sign of life
END_REASON_TAG = "warmstart.end_reason"
FLOW_RUN_TAG = "warmstart.flow_run_id"  # the Prefect flow run a run belongs to
STALE_AFTER_S = 3600.0  # default for close_stale_runs: an hour without any sign of life
STATUSES = ("FINISHED", "FAILED", "KILLED")
# Runs this process started and has not ended (run id -> its flow run id, "" for none): what
# ``unclosed.record`` writes down when MLflow cannot be reached to end them.
_OPEN: dict[str, str] = {}
_OPEN_LOCK = threading.Lock()
_SECRET_KEY = re.compile(
    r"secret|passw(or)?d|token|api[_-]?key|access[_-]?key|credential|private[_-]?key|auth",
    re.IGNORECASE,
)


# ------------------------------------------------------------------ names and experiments


def experiment_name(target_name: str) -> str:
    return f"{EXPERIMENT_PREFIX}{target_name}"


def model_name_for(target_name: str) -> str:
    """The registered model of a target: ``warmstart-<target>`` (``builtin:`` dropped; MLflow
    forbids ``/`` and ``:`` in names, so other separators become ``-``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", target_name.removeprefix("builtin:")).strip("-.")
    if not name:
        raise DataError(f"target name {target_name!r} gives no usable model name: rename it")
    return f"{MODEL_PREFIX}{name}"


# The tag the MLflow 3 UI reads to open an experiment in its training (not GenAI) view.
_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = {_KIND_TAG: "custom_model_development"}


def experiment_id(target_name: str) -> str:
    """The id of experiment ``warmstart/<target>``, created or restored if needed.

    Safe under concurrent callers: a lost creation race re-reads the winner's experiment.
    """
    from mlflow.exceptions import MlflowException  # deferred: heavy

    name = experiment_name(target_name)
    c = client()
    with errors(f"experiment lookup of {name!r}"):
        exp = c.get_experiment_by_name(name)
        if exp is None:
            try:
                return c.create_experiment(
                    name, tags={"warmstart.target": target_name, **EXPERIMENT_KIND}
                )
            except MlflowException as exc:
                exp = c.get_experiment_by_name(name)
                if exp is None:
                    raise exc from None
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        if exp.tags.get(_KIND_TAG) != EXPERIMENT_KIND[_KIND_TAG]:
            c.set_experiment_tag(exp.experiment_id, _KIND_TAG, EXPERIMENT_KIND[_KIND_TAG])
        return exp.experiment_id


# ------------------------------------------------------------------ params and tags


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists and tuples stay values."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (set, frozenset)):
        return json.dumps(sorted(value, key=str), default=str)
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), default=str)
    return str(value)


def safe_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Flattened params with secret-looking keys dropped, secret values replaced by ``***`` and
    values cut to MLflow's length limit."""
    secrets = secret_values()
    out: dict[str, str] = {}
    for key, value in flatten(params).items():
        if _SECRET_KEY.search(key):
            continue
        text = _text(value)
        if any(s in text for s in secrets):
            text = redact(text)
        out[key] = text[:MAX_PARAM_LENGTH]
    return out


def safe_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tag values as strings, secrets replaced by ``***``, cut to MLflow's length limit."""
    return {str(k): redact(_text(v))[:MAX_TAG_LENGTH] for k, v in tags.items()}


# ------------------------------------------------------------------ runs


def start_run(
    experiment_id: str,
    name: str,
    *,
    parent: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> str:
    """Create a RUNNING run (nested under ``parent`` if given); returns its id."""
    from mlflow.entities import Param  # deferred: heavy

    all_tags = {"mlflow.runName": name, **(tags or {})}
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    c = client()
    with errors(f"start of run {name!r}"):
        run = c.create_run(experiment_id, tags=safe_tags(all_tags), run_name=name)
        with _OPEN_LOCK:
            _OPEN[run.info.run_id] = str(all_tags.get(FLOW_RUN_TAG, ""))
        items = [Param(k, v) for k, v in safe_params(params or {}).items()]
        for i in range(0, len(items), BATCH):
            c.log_batch(run.info.run_id, params=items[i : i + BATCH])
    return run.info.run_id


def end_run(run_id: str, status: str = "FINISHED", reason: str | None = None) -> None:
    """End a run: FINISHED, FAILED or KILLED; ``reason`` goes to the ``warmstart.end_reason`` tag."""
    if status not in STATUSES:
        raise ConfigError(f"run status {status!r}: use one of {', '.join(STATUSES)}")
    c = client()
    with errors(f"end of run {run_id}"):
        if reason:
            c.set_tag(run_id, END_REASON_TAG, redact(reason)[:MAX_TAG_LENGTH])
        c.set_terminated(run_id, status=status)
    with _OPEN_LOCK:
        _OPEN.pop(run_id, None)


def open_runs(flow_run_id: str | None = None) -> list[str]:
    """Runs this process started and has not ended (those of one flow run, if given)."""
    with _OPEN_LOCK:
        return sorted(r for r, f in _OPEN.items() if flow_run_id is None or f == flow_run_id)


def set_tags(run_id: str, tags: Mapping[str, Any]) -> None:
    from mlflow.entities import RunTag  # deferred: heavy

    items = [RunTag(k, v) for k, v in safe_tags(tags).items()]
    if items:
        with errors(f"set_tags on run {run_id}"):
            client().log_batch(run_id, tags=items)


_METRIC_KEY_BAD = re.compile(r"[^\w.\- :/]")


def metric_key(name: str) -> str:
    """``name`` as MLflow accepts it (letters, digits, ``_ - . : /`` and spaces): an arm such
    as ``freeze=layer3`` or ``scratch/lr=0.001,wd=0.0005`` becomes ``freeze_layer3`` or
    ``scratch/lr_0.001_wd_0.0005`` instead of failing the run."""
    return _METRIC_KEY_BAD.sub("_", name)


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
    """Numeric, finite-or-not-NaN metrics at ``step`` (0 when None); other values are skipped.
    Keys are made valid for MLflow (``metric_key``)."""
    from mlflow.entities import Metric  # deferred: heavy

    now = int(time.time() * 1000)
    items = [
        Metric(metric_key(k), float(v), now, int(step or 0))
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and v == v
    ]
    if items:
        with errors(f"log_metrics on run {run_id}"):
            client().log_batch(run_id, metrics=items)


def log_metric_rows(run_id: str, rows: list[tuple[int, Mapping[str, float]]]) -> None:
    """Several steps' metrics (``(step, metrics)`` each, as ``log_metrics`` filters them) in as
    few requests as MLflow allows (1000 metrics per ``log_batch``)."""
    from mlflow.entities import Metric  # deferred: heavy

    now = int(time.time() * 1000)
    items = [
        Metric(metric_key(k), float(v), now, int(step or 0))
        for step, metrics in rows
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and v == v
    ]
    for i in range(0, len(items), METRICS_BATCH):
        with errors(f"log_metrics on run {run_id}"):
            client().log_batch(run_id, metrics=items[i : i + METRICS_BATCH])


def run_data(run_id: str) -> tuple[dict[str, float], dict[str, str]]:
    """(latest metrics, tags) of a run."""
    with errors(f"read of run {run_id}"):
        data = client().get_run(run_id).data
    return dict(data.metrics), dict(data.tags)


def heartbeat(run_id: str) -> None:
    """Mark a run alive now (a tag with epoch milliseconds). Metrics count as signs of life too,
    so a stage that logs every epoch needs this only around long silent steps."""
    with errors(f"heartbeat of run {run_id}"):
        client().set_tag(run_id, HEARTBEAT_TAG, str(int(time.time() * 1000)))


# ------------------------------------------------------------------ stale runs


def last_activity_ms(run: Run) -> int:
    """The latest sign of life of one run: start, end, metric timestamps, heartbeat tag."""
    stamps = [run.info.start_time or 0, run.info.end_time or 0]
    stamps += [m.timestamp for m in getattr(run.data, "_metric_objs", [])]
    beat = run.data.tags.get(HEARTBEAT_TAG, "")
    if beat.isdigit():
        stamps.append(int(beat))
    return max(stamps)


def _search(experiment_id: str, where: str) -> Iterable[Run]:
    c = client()
    token = None
    while True:
        page = c.search_runs(
            [experiment_id], filter_string=where, max_results=500, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def close_stale_runs(experiment_id: str, older_than_s: float = STALE_AFTER_S) -> list[str]:
    """Close as KILLED every RUNNING run of the experiment (parent or child) with no sign of
    life, its own or a child's, for ``older_than_s`` seconds; returns their ids.

    Pick ``older_than_s`` several times the longest silence of a healthy run (the longest epoch,
    or the longest step between stages): a live run closed by mistake keeps logging but shows
    KILLED. Each closed run gets a ``warmstart.end_reason`` tag saying why.
    """
    now = int(time.time() * 1000)
    limit = now - int(older_than_s * 1000)
    with errors(f"search of stale runs in experiment {experiment_id}"):
        latest = {}
        for run in _search(experiment_id, "attributes.status = 'RUNNING'"):
            children = _search(experiment_id, f"tags.mlflow.parentRunId = '{run.info.run_id}'")
            latest[run.info.run_id] = max(
                [last_activity_ms(run), *(last_activity_ms(r) for r in children)]
            )
    # decided before closing any: closing a child must not count as its parent's activity
    stale = [run_id for run_id, last in latest.items() if last < limit]
    for run_id in stale:
        idle = (now - latest[run_id]) / 1000
        end_run(
            run_id,
            "KILLED",
            reason=f"stale: no sign of life for {idle:.0f} s (limit {older_than_s:.0f} s); "
            "closed by close_stale_runs",
        )
    return stale


def end_runs_of_flow(flow_run_id: str, status: str, reason: str) -> list[str]:
    """End every RUNNING run (parent and stages) tagged ``warmstart.flow_run_id = flow_run_id``
    in the ``warmstart/`` experiments: for a flow's failure, crash and cancellation hooks.
    Returns the ids it ended."""
    if status not in STATUSES:
        raise ConfigError(f"run status {status!r}: use one of {', '.join(STATUSES)}")
    where = f"tags.`{FLOW_RUN_TAG}` = '{flow_run_id}' and attributes.status = 'RUNNING'"
    c = client()
    with errors(f"search of the runs of flow run {flow_run_id}"):
        experiments = c.search_experiments(filter_string=f"name LIKE '{EXPERIMENT_PREFIX}%'")
        running = [r.info.run_id for e in experiments for r in _search(e.experiment_id, where)]
    for run_id in running:
        end_run(run_id, status, reason)
    return running
