"""Everything MLflow: connection, experiments, safe params, dataset inputs, figures, models, registry.

The one tracking module (like ``storage`` for S3): other code calls these functions and never
imports mlflow itself. MLflow 3 APIs only: ``log_model(name=...)`` (logged models are first-class,
``models:/m-...``), aliases instead of stages, ``MetaDataset`` inputs.

Model serialization: ``pt2`` (``torch.export``) by default. The artifact is a traced graph with
its weights, so ``mlflow.pytorch.load_model("models:/warmstart-x@champion")`` works in a fresh
process without our ``models`` package and without unpickling (``configure`` sets
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false`` unless the environment says otherwise). The loaded
object is a ``torch.fx.GraphModule`` frozen in eval mode: call it, do not call ``.eval()``/
``.train()`` on it (torch raises ``NotImplementedError``). ``serialization="pickle"`` remains for
models ``torch.export`` cannot trace; loading those needs the model code installed and pickle
deserialization allowed.

Registry: one registered model per target (``model_name_for``); every candidate becomes a version
tagged with its provenance and the gate's verdict; only a passed gate moves the ``champion``
alias, and the replaced version gets the ``previous-champion`` alias and tag.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from warmstart.errors import DataError, TrackingError
from warmstart.settings import redact, secret_values

if TYPE_CHECKING:
    import torch
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo

    from warmstart.gate import GateDecision


class ExportError(TrackingError):
    """``torch.export`` could not trace a model for the pt2 format (not an I/O failure: retrying
    will not help; ``serialization="pickle"`` may)."""


CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
EXPERIMENT_PREFIX = "warmstart/"
MODEL_PREFIX = "warmstart-"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
MAX_TAG_LENGTH = 5000  # conservative: model-version tag values are limited to 5000 characters
_SECRET_KEY = re.compile(
    r"secret|passw(or)?d|token|api[_-]?key|access[_-]?key|credential|private[_-]?key|auth",
    re.IGNORECASE,
)

# Client defaults set by configure() (an exported value wins): fail fast instead of MLflow's
# default 7 retries with exponential backoff (minutes); the Prefect task owns the retries.
CLIENT_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
}


def _safe_uri(uri: str) -> str:
    """A tracking URI fit for messages: no user:password, no secret values."""
    return redact(re.sub(r"//[^/@]*@", "//", uri))


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """Turn MLflow and HTTP failures into a one-line TrackingError that names the fix."""
    import requests
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, requests.RequestException) as exc:
        uri = _safe_uri(os.environ.get("MLFLOW_TRACKING_URI", "?"))
        first = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if len(first) > 300:
            first = first[:300] + "…"
        raise TrackingError(
            f"MLflow {what} failed ({first}) at {uri}: check the server (`warmstart up`, "
            "MLFLOW_TRACKING_URI) and rerun"
        ) from None


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


# --------------------------------------------------------------------------------------------
# connection and experiments
# --------------------------------------------------------------------------------------------


def configure(*, timeout: float = 3.0) -> str:
    """Point MLflow at ``MLFLOW_TRACKING_URI`` after checking the server answers; returns the URI.

    An http(s) URI must answer ``GET <uri>/health`` within ``timeout`` seconds. Also sets the
    client defaults in ``CLIENT_DEFAULTS`` where the environment does not set them.
    """
    import httpx
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        raise TrackingError(
            "MLFLOW_TRACKING_URI is not set: start the stack with `warmstart up` (and "
            "`eval $(warmstart env)`) or export the URI of your MLflow server"
        )
    for key, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if uri.startswith(("http://", "https://")):
        health = uri.rstrip("/") + "/health"
        try:
            response = httpx.get(health, timeout=timeout)
        except httpx.HTTPError as exc:
            raise TrackingError(
                f"MLflow server unreachable at {_safe_uri(uri)} (MLFLOW_TRACKING_URI; "
                f"{type(exc).__name__}): start it with `warmstart up` or fix the variable"
            ) from None
        if response.status_code != 200:
            raise TrackingError(
                f"MLflow at {_safe_uri(uri)} (MLFLOW_TRACKING_URI) answered /health with HTTP "
                f"{response.status_code}: check the URI, or the server's --allowed-hosts"
            )
    mlflow.set_tracking_uri(uri)
    return uri


def experiment_name(target_name: str) -> str:
    return f"{EXPERIMENT_PREFIX}{target_name}"


def experiment_for(target_name: str) -> str:
    """The experiment id for a target (``warmstart/<target>``), created or restored if needed.

    Safe under concurrent callers: a lost creation race re-reads the winner's experiment.
    """
    from mlflow.exceptions import MlflowException

    name = experiment_name(target_name)
    client = _client()
    with _errors(f"experiment lookup of {name!r}"):
        exp = client.get_experiment_by_name(name)
        if exp is None:
            try:
                return client.create_experiment(name, tags={"warmstart.target": target_name})
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id


def model_name_for(target_name: str) -> str:
    """The registered model of a target: ``warmstart-<target>`` (``builtin:`` dropped; MLflow
    forbids ``/`` and ``:`` in names, so other separators become ``-``)."""
    name = target_name.removeprefix("builtin:")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    if not name:
        raise DataError(f"target name {target_name!r} gives no usable model name: rename it")
    return f"{MODEL_PREFIX}{name}"


@contextlib.contextmanager
def stage_run(
    run_name: str,
    *,
    experiment_id: str,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Iterator[Run]:
    """A (nested) run for one stage. MLflow's active run is per thread, so a Prefect task in a
    worker thread names its parent explicitly instead of relying on an enclosing ``start_run``."""
    import mlflow

    with _errors(f"start of run {run_name!r}"):
        run = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name,
            parent_run_id=parent_run_id,
            nested=parent_run_id is not None,
            tags={k: redact(str(v)) for k, v in (tags or {}).items()},
        )
    status = "FINISHED"
    try:
        yield run
    except BaseException:
        status = "FAILED"
        raise
    finally:
        with _errors(f"end of run {run_name!r}"):
            mlflow.end_run(status=status)


# --------------------------------------------------------------------------------------------
# params, datasets, figures, artifacts
# --------------------------------------------------------------------------------------------


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
    if isinstance(value, (list, tuple, set, frozenset)):
        return json.dumps(
            sorted(value) if isinstance(value, (set, frozenset)) else list(value), default=str
        )
    return str(value)


def safe_params(params: Mapping[str, Any]) -> dict[str, str]:
    """What ``log_params_safe`` logs: flattened, secret-looking keys dropped, secret values
    replaced by ``***``, values cut to MLflow's length limit."""
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


def log_params_safe(params: Mapping[str, Any]) -> dict[str, str]:
    """Log the resolved configuration of the active run without secrets; returns what was logged."""
    import mlflow

    clean = safe_params(params)
    if clean:
        with _errors("log_params"):
            mlflow.log_params(clean)
    return clean


def _manifest_hash(manifest: Mapping[str, Any]) -> str:
    for key in ("hash", "sha256", "digest", "dataset_hash", "split_hash"):
        value = manifest.get(key)
        if isinstance(value, str) and value:
            return value
    raise DataError(
        f"dataset manifest without a hash (keys: {sorted(manifest)}): pass the manifest written "
        "by ingest/make_splits, which carries 'hash'"
    )


def log_dataset_input(
    ref_manifest: Mapping[str, Any],
    *,
    name: str,
    context: str,
    tags: Mapping[str, Any] | None = None,
) -> None:
    """Record a dataset (or split) as an input of the active run: source URI, name and digest.

    A ``MetaDataset`` carries only metadata, so this is cheap for large image sets (no hashing of
    arrays by MLflow; the content hash is ours). Manifest keys used: ``hash`` (or ``sha256``),
    ``uri`` (default ``s3://<bucket>/datasets/<hash>/``), ``shape`` (C, H, W), ``source``.
    """
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import Schema, TensorSpec

    from warmstart import storage

    digest = _manifest_hash(ref_manifest)
    uri = ref_manifest.get("uri") or f"{storage.uri('datasets', digest)}/"
    schema = None
    shape = ref_manifest.get("shape") or ref_manifest.get("image_shape")
    if shape:
        schema = Schema([TensorSpec(np.dtype("uint8"), (-1, *[int(s) for s in shape]), "images")])
    input_tags = {"warmstart.hash": digest}
    if ref_manifest.get("source"):
        input_tags["warmstart.source"] = redact(str(ref_manifest["source"]))
    input_tags.update({k: redact(str(v)) for k, v in (tags or {}).items()})
    with _errors(f"log_input of dataset {name!r}"):
        dataset = MetaDataset(
            source=resolve_dataset_source(str(uri)), name=name, digest=digest[:32], schema=schema
        )
        mlflow.log_input(dataset, context=context, tags=input_tags)


def log_image(array_hwc_uint8: np.ndarray, artifact_file: str) -> None:
    """An H×W(×C) uint8 image (e.g. ``reports.image_grid`` of GAN samples) as a PNG artifact."""
    import mlflow

    arr = np.asarray(array_hwc_uint8)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise DataError(
            f"image for {artifact_file} is {arr.dtype} {arr.shape}: pass H×W or H×W×C uint8 "
            "(reports.image_grid tiles N×C×H×W batches)"
        )
    with _errors(f"log_image {artifact_file}"):
        mlflow.log_image(arr, artifact_file=artifact_file)


def log_figure(fig: Any, artifact_file: str) -> None:
    import mlflow

    with _errors(f"log_figure {artifact_file}"):
        mlflow.log_figure(fig, artifact_file)


def log_confusion_matrix(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: list[str],
    *,
    artifact_file: str = "confusion_matrix.png",
    title: str = "",
) -> None:
    from warmstart.reports import confusion_matrix_figure

    log_figure(confusion_matrix_figure(y_true, y_pred, class_names, title=title), artifact_file)


def log_learning_curves(
    history: Mapping[str, list[Mapping[str, float]]], *, artifact_file: str = "learning_curves.png"
) -> None:
    from warmstart.reports import learning_curves_figure

    log_figure(learning_curves_figure(history), artifact_file)


def log_epoch_metrics(metrics: Mapping[str, float], *, epoch: int) -> None:
    """Per-epoch metrics (``train_loss``, ``val_acc`` ...) with the epoch as the step."""
    import mlflow

    with _errors("log_metrics"):
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=int(epoch))


def log_predictions(
    columns: Mapping[str, np.ndarray | list], *, artifact_file: str = "predictions.parquet"
) -> None:
    """Per-example predictions (e.g. ``index``, ``label``, ``pred``, ``seed``) as a parquet file."""
    import mlflow
    import pandas as pd

    frame = pd.DataFrame({k: np.asarray(v) for k, v in columns.items()})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        frame.to_parquet(path, index=False)
        parent = str(Path(artifact_file).parent)
        with _errors(f"log_artifact {artifact_file}"):
            mlflow.log_artifact(str(path), artifact_path=None if parent == "." else parent)


def log_gate_report(
    decision: GateDecision,
    table: list[Mapping[str, Any]] | None = None,
    *,
    context: Mapping[str, Any] | None = None,
    artifact_dir: str = "gate",
) -> tuple[str, str]:
    """Gate report JSON + Markdown as artifacts of the active run, verdict and reason as tags.
    Returns (json, markdown) so the caller can publish the same text as a Prefect artifact."""
    import mlflow

    from warmstart.reports import gate_report

    as_json, as_md = gate_report(decision, table or [], context=context)
    as_json, as_md = redact(as_json), redact(as_md)
    with _errors("log of the gate report"):
        mlflow.log_text(as_json, f"{artifact_dir}/gate_report.json")
        mlflow.log_text(as_md, f"{artifact_dir}/gate_report.md")
        mlflow.set_tags(_gate_tags(decision))
    return as_json, as_md


def _gate_tags(decision: GateDecision) -> dict[str, str]:
    d = decision.delta_vs_scratch
    tags = {
        "gate_verdict": decision.verdict,
        "gate_reason": decision.reason[:MAX_TAG_LENGTH],
        "gate_candidate": decision.candidate,
        "gate_margin": f"{decision.margin:.4f}",
        "gate_delta_vs_scratch": f"{d['mean_diff']:.4f}",
        "gate_delta_ci_low": f"{d['ci_low']:.4f}",
        "gate_delta_ci_high": f"{d['ci_high']:.4f}",
    }
    if decision.vs_champion is not None:
        tags["gate_delta_vs_champion"] = f"{decision.vs_champion['mean_diff']:.4f}"
    return tags


# --------------------------------------------------------------------------------------------
# models and the registry
# --------------------------------------------------------------------------------------------


def _pip_requirements() -> list[str]:
    """Pinned requirements of a logged model, given explicitly: MLflow's inference would load
    the model in a subprocess (seconds of CPU on a busy 2-core machine) to find the same list."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "torch", "numpy")]


def log_torch_model(
    model: torch.nn.Module,
    *,
    name: str = "model",
    example: np.ndarray,
    registered_model_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    serialization: Literal["pt2", "pickle"] = "pt2",
) -> ModelInfo:
    """Log a classifier (float32 N×C×H×W in [0, 1] → logits) to the active run.

    Signature and input example come from ``example`` (first rows; at least two, so
    ``torch.export`` keeps the batch dimension dynamic instead of specialising it to 1). The model
    is copied to CPU in eval mode before export, so the artifact loads on any machine.
    Returns MLflow's ``ModelInfo`` (``model_uri`` is ``models:/m-...``).
    """
    import mlflow
    import torch
    from mlflow.models import infer_signature

    if mlflow.active_run() is None:
        raise TrackingError(
            f"log_torch_model({name!r}) needs an active MLflow run: call it inside stage_run(...)"
        )
    ex = np.ascontiguousarray(np.asarray(example, dtype=np.float32)[:4])
    if ex.ndim != 4 or ex.shape[0] == 0:
        raise DataError(f"example has shape {ex.shape}: pass a float32 N×C×H×W batch")
    if ex.shape[0] == 1:
        ex = np.concatenate([ex, ex])
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    with torch.no_grad():
        out = cpu_model(torch.from_numpy(ex)).detach().numpy()
    signature = infer_signature(ex, out)
    clean_tags = {k: redact(str(v)) for k, v in (tags or {}).items()}
    try:
        with _errors(f"log_model {name!r}"):
            return mlflow.pytorch.log_model(
                cpu_model,
                name=name,
                input_example=ex,
                signature=signature,
                registered_model_name=registered_model_name,
                tags=clean_tags or None,
                serialization_format=serialization,
                pip_requirements=_pip_requirements(),
            )
    except TrackingError:
        raise
    except Exception as exc:  # torch.export tracing failures come in many types
        if serialization != "pt2":
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"torch.export could not trace {type(model).__name__} for {name!r} ({first[:200]}): "
            "make its forward export-friendly or log it with serialization='pickle'"
        ) from exc


def champion_version(model_name: str) -> ModelVersion | None:
    """The version holding the ``champion`` alias, or None (no such model or no champion)."""
    from mlflow.exceptions import MlflowException

    with _errors(f"lookup of the champion of {model_name!r}"):
        try:
            return _client().get_model_version_by_alias(model_name, CHAMPION)
        except MlflowException as exc:
            # no such registered model, or no such alias
            if exc.error_code in (
                "RESOURCE_DOES_NOT_EXIST",
                "INVALID_PARAMETER_VALUE",
                "NOT_FOUND",
            ):
                return None
            raise


def champion_predictions(
    model_name: str, images_float: np.ndarray, *, batch_size: int = 512
) -> np.ndarray | None:
    """Predicted class indices of the current champion on ``images_float`` (float32 N×C×H×W in
    [0, 1]), through plain ``mlflow.pyfunc``; None when there is no champion yet.

    Loads the exact version behind the alias at the time of the call, so a concurrent promotion
    cannot mix two versions' predictions.
    """
    import mlflow

    version = champion_version(model_name)
    if version is None:
        return None
    uri = f"models:/{model_name}/{version.version}"
    with _errors(f"load of {uri}"):
        model = mlflow.pyfunc.load_model(uri)
    x = np.ascontiguousarray(np.asarray(images_float, dtype=np.float32))
    preds = []
    try:
        for start in range(0, len(x), batch_size):
            logits = np.asarray(model.predict(x[start : start + batch_size]))
            preds.append(logits.argmax(axis=1))
    except Exception as exc:  # shape/dtype mismatch with an older champion
        raise TrackingError(
            f"champion {uri} cannot predict on test images of shape {x.shape[1:]} "
            f"({type(exc).__name__}): its input differs; compare on matching preprocessing"
        ) from None
    return np.concatenate(preds).astype(np.int64) if preds else np.zeros(0, dtype=np.int64)


def _find_version(client: Any, model_name: str, model_uri: str) -> ModelVersion | None:
    """An existing version registered from ``model_uri`` (makes a retried registration a no-op)."""
    for mv in client.search_model_versions(filter_string=f"name = '{model_name}'"):
        if mv.tags.get("model_uri") == model_uri:
            return mv
    return None


def register_and_promote(
    *,
    model_name: str,
    model_uri: str,
    run_id: str,
    decision: GateDecision,
    tags: Mapping[str, Any],
    test_correct: np.ndarray,
) -> dict[str, Any]:
    """Register ``model_uri`` as a new version, tag it with provenance and the verdict, and move
    ``champion`` to it only if the gate passed.

    ``tags`` should carry ``strategy``, ``transfer_mode``, ``source_dataset_hash`` and
    ``checkpoint_uri``; the gate adds ``gate_verdict``, ``gate_reason``, the CI numbers and
    ``test_accuracy`` (mean of ``test_correct``). On a pass the replaced champion keeps the alias
    ``previous-champion`` and the tag ``previous_champion=true``; on a failure no alias changes.
    Idempotent for a retried call with the same ``model_uri``. Returns a summary dict.
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    correct = np.asarray(test_correct, dtype=bool)
    version_tags = {k: redact(str(v))[:MAX_TAG_LENGTH] for k, v in tags.items()}
    version_tags.update(_gate_tags(decision))
    version_tags.update(
        {
            "test_accuracy": f"{float(correct.mean()):.4f}" if correct.size else "nan",
            "test_examples": str(correct.shape[-1] if correct.ndim else 0),
            "model_uri": model_uri,
            "run_id": run_id,
        }
    )
    with _errors(f"registration of {model_uri} as {model_name!r}"):
        try:
            client.create_registered_model(
                model_name, description="warmstart transfer models; alias champion = served"
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        mv = _find_version(client, model_name, model_uri)
        if mv is None:
            logged = re.fullmatch(r"models:/(m-[0-9a-f]+)", model_uri)
            mv = client.create_model_version(
                model_name,
                source=model_uri,
                run_id=run_id,
                tags=version_tags,
                await_creation_for=60,
                model_id=logged.group(1) if logged else None,  # MLflow 3: links the LoggedModel
            )
        else:
            for key, value in version_tags.items():
                client.set_model_version_tag(model_name, mv.version, key, value)
        previous = None
        if decision.passed:
            current = client.get_registered_model(model_name).aliases.get(CHAMPION)
            if current is not None and str(current) != str(mv.version):
                previous = str(current)
                client.set_registered_model_alias(model_name, PREVIOUS_CHAMPION, previous)
                client.set_model_version_tag(model_name, previous, "previous_champion", "true")
            client.set_registered_model_alias(model_name, CHAMPION, mv.version)
            client.set_model_version_tag(model_name, mv.version, "promoted", "true")
        champion = client.get_registered_model(model_name).aliases.get(CHAMPION)
    return {
        "model_name": model_name,
        "version": str(mv.version),
        "promoted": bool(decision.passed),
        "verdict": decision.verdict,
        "champion_version": str(champion) if champion is not None else None,
        "previous_champion_version": previous,
        "model_uri": model_uri,
        "champion_uri": f"models:/{model_name}@{CHAMPION}",
    }
