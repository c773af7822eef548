"""MLflow runs of a pipeline: one parent run per flow run, a nested run per stage.

Explicit ``MlflowClient`` calls with run ids (no fluent active-run state), so stages running in
parallel threads log into the right run. Params are the resolved configuration, never secrets.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from warmstart.errors import TrackingError
from warmstart.settings import redact


def _tracked(fn):
    """MLflow client failures become one-line TrackingErrors naming the server and the fix."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TrackingError:
            raise
        except Exception as exc:
            from mlflow.exceptions import MlflowException
            from requests.exceptions import RequestException

            if isinstance(exc, MlflowException | RequestException | ConnectionError):
                uri = os.environ.get("MLFLOW_TRACKING_URI", "")
                first = redact(str(exc).strip().splitlines()[0][:200]) if str(exc).strip() else ""
                raise TrackingError(
                    f"MLflow at {uri} failed during {fn.__name__} ({type(exc).__name__}: {first}): "
                    "check that the server and its S3 store are up (`warmstart status`)"
                ) from None
            raise

    return wrapper


def client():
    from mlflow.tracking import MlflowClient

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise TrackingError(
            "MLFLOW_TRACKING_URI is not set: run `warmstart up` (and `eval $(warmstart env)`) "
            "or point it at your MLflow server"
        )
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # One "View run …" line per ended stage run floods the CLI; the summary prints the URLs.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    return MlflowClient(tracking_uri=uri)


@_tracked
def experiment_id(target_name: str) -> str:
    c = client()
    name = f"warmstart/{target_name}"
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return c.create_experiment(name)
    except Exception:  # noqa: BLE001 - created concurrently
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


@_tracked
def start_run(
    experiment: str,
    name: str,
    *,
    parent: str | None = None,
    params: dict | None = None,
    tags: dict | None = None,
) -> str:
    from mlflow.entities import Param

    c = client()
    all_tags = {"mlflow.runName": name, **(tags or {})}
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    run = c.create_run(
        experiment, tags={k: redact(str(v)) for k, v in all_tags.items()}, run_name=name
    )
    if params:
        from warmstart.tracking import safe_params

        items = [Param(k, v) for k, v in safe_params(params).items()]
        for i in range(0, len(items), 90):
            c.log_batch(run.info.run_id, params=items[i : i + 90])
    return run.info.run_id


@_tracked
def log_metrics(run_id: str, metrics: dict, step: int | None = None) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [
        Metric(k, float(v), now, step or 0)
        for k, v in metrics.items()
        if isinstance(v, int | float) and v == v
    ]
    if items:
        client().log_batch(run_id, metrics=items)


@_tracked
def log_bytes(run_id: str, artifact_file: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_bytes(data)
        folder = str(Path(artifact_file).parent)
        client().log_artifact(run_id, str(path), None if folder == "." else folder)


def log_text(run_id: str, artifact_file: str, text: str) -> None:
    log_bytes(run_id, artifact_file, redact(text).encode())


@_tracked
def end_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status=status)


@_tracked
def set_tags(run_id: str, tags: dict) -> None:
    from mlflow.entities import RunTag

    client().log_batch(run_id, tags=[RunTag(k, redact(str(v))[:5000]) for k, v in tags.items()])


@_tracked
def log_dataset_inputs(run_id: str, datasets: dict[str, dict]) -> None:
    """Each dataset (an ingest result) as a run input with its content digest; cheap for large
    image sets (a MetaDataset, not the arrays). The key is the context: source, target."""
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = []
    for role, ref in datasets.items():
        ds = MetaDataset(
            source=HTTPDatasetSource(url=ref["uri"]), name=ref["name"], digest=ref["hash"][:16]
        )
        inputs.append(
            DatasetInput(
                dataset=ds._to_mlflow_entity(),
                tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value=role)],
            )
        )
    client().log_inputs(run_id, datasets=inputs)
