"""Everything MLflow, in one layer (like ``storage`` for S3): other code calls these functions
and never imports mlflow itself.

- ``client``: the one client setup (one HTTP timeout, retries that outlast a server restart,
  telemetry off) and the one error mapping to a one-line ``TrackingError``;
- ``runs``: experiments, runs by explicit id (safe from parallel threads), params without
  secrets, metrics, tags, heartbeats, ``end_run`` and ``close_stale_runs``;
- ``unclosed``: runs that could not be ended while MLflow was down, recorded on local disk and
  ended at the next ``warmstart up`` or run;
- ``artifacts``: bytes, text and dataset inputs of a run;
- ``models``: logging a classifier into a run (pt2, pickle fallback), resolving and loading
  ``models:/`` URIs through ``mlflow.pyfunc``;
- ``registry``: registered models, versions, tags and aliases (the promotion policy is
  ``warmstart.promotion``'s).

MLflow 3 only: logged models are first-class (``models:/m-…``), aliases instead of stages,
``MetaDataset`` inputs.
"""

from warmstart.tracking.artifacts import log_bytes, log_dataset_inputs, log_figure, log_text
from warmstart.tracking.client import (
    NotFound,
    check_server,
    errors,
    retry_window_s,
    tracking_uri,
)
from warmstart.tracking.models import (
    ExportError,
    LoggedModel,
    ResolvedModel,
    UnusableModel,
    load_pyfunc,
    log_model,
    predict_logits,
    resolve_model,
    weights_sha256,
)
from warmstart.tracking.registry import (
    CHAMPION,
    PREVIOUS_CHAMPION,
    VersionRef,
    aliases,
    create_version,
    ensure_registered_model,
    find_versions,
    set_alias,
    set_card,
    set_version_tags,
    version_by_alias,
)
from warmstart.tracking.runs import (
    END_REASON_TAG,
    FLOW_RUN_TAG,
    HEARTBEAT_TAG,
    STALE_AFTER_S,
    close_stale_runs,
    end_run,
    end_runs_of_flow,
    experiment_id,
    experiment_name,
    heartbeat,
    log_metric_rows,
    log_metrics,
    model_name_for,
    open_runs,
    run_data,
    safe_params,
    set_tags,
    start_run,
)
from warmstart.tracking.unclosed import close_recorded as close_recorded_runs
from warmstart.tracking.unclosed import record as record_unclosed

__all__ = [
    "CHAMPION",
    "END_REASON_TAG",
    "FLOW_RUN_TAG",
    "HEARTBEAT_TAG",
    "PREVIOUS_CHAMPION",
    "STALE_AFTER_S",
    "ExportError",
    "LoggedModel",
    "NotFound",
    "ResolvedModel",
    "UnusableModel",
    "VersionRef",
    "aliases",
    "check_server",
    "close_recorded_runs",
    "close_stale_runs",
    "create_version",
    "end_run",
    "end_runs_of_flow",
    "ensure_registered_model",
    "errors",
    "experiment_id",
    "experiment_name",
    "find_versions",
    "heartbeat",
    "load_pyfunc",
    "log_bytes",
    "log_dataset_inputs",
    "log_figure",
    "log_metrics",
    "log_metric_rows",
    "log_model",
    "log_text",
    "model_name_for",
    "open_runs",
    "predict_logits",
    "record_unclosed",
    "resolve_model",
    "retry_window_s",
    "run_data",
    "safe_params",
    "set_alias",
    "set_card",
    "set_tags",
    "set_version_tags",
    "start_run",
    "tracking_uri",
    "version_by_alias",
    "weights_sha256",
]
