"""Models in MLflow: logging a classifier into a given run, resolving ``models:/`` URIs, loading
and running them through plain ``mlflow.pyfunc``.

Serialization: ``pt2`` (``torch.export``) first, served by the image pyfunc of
``warmstart.serving`` (models-from-code: PNG/JPEG bytes in, class names and probabilities out;
``ImageClassifier.logits`` takes tensors). Its artifact ``program`` (``model.pt2``) is the traced
graph with its weights: ``torch.export.load(path).module()`` runs it in a fresh process without
our ``models`` package and without unpickling (the client settings refuse pickle
deserialization unless the environment allows it); it is frozen in eval mode: call it, do not
call ``.eval()``/``.train()`` on it. A model ``torch.export`` cannot trace falls back to an
``mlflow.pytorch`` ``pickle`` model (tensors only); loading that one needs the model code
installed and ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from warmstart.errors import DataError, TrackingError
from warmstart.serving import IMAGE_COLUMN
from warmstart.tracking.client import NotFound, client, errors, explain, first_line
from warmstart.tracking.runs import safe_tags

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
Serialization = Literal["auto", "pt2", "pickle"]
_ALIAS = re.compile(r"models:/([^/@]+)@([^/@]+)")
_VERSION = re.compile(r"models:/([^/@]+)/(\d+)")
_LOGGED = re.compile(r"models:/(m-[0-9a-f]+)")
PT2_FILE = "model.pt2"


class ExportError(TrackingError):
    """``torch.export`` could not trace a model for the pt2 format (not an I/O failure:
    retrying will not help; ``serialization="pickle"`` may)."""


class UnusableModel(TrackingError):
    """A model that was found but cannot be loaded here or run on the given images (a pickle
    artifact with pickle refused, a graph for other input shapes): retrying will not help."""


@dataclass(frozen=True)
class LoggedModel:
    """A model logged to a run: ``uri`` is ``models:/m-…``."""

    uri: str
    model_id: str
    run_id: str
    serialization: str  # pt2 | pickle
    weights_sha256: str


@dataclass(frozen=True)
class ResolvedModel:
    """A model URI pinned to what will be loaded, with its input and output shapes."""

    requested: str  # what the caller asked for, e.g. models:/name@champion
    uri: str  # what is loaded, e.g. models:/name/3 (an alias pinned to its version)
    name: str | None
    version: str | None
    input_shape: tuple[int, int, int]  # C, H, W from the signature
    outputs: int | None  # classes from the output signature, if it says
    tags: dict[str, str] = field(default_factory=dict)


def weights_sha256(model: torch.nn.Module) -> str:
    """Content hash of a module's weights and buffers (names, dtypes, shapes and bytes, in name
    order): equal for the same weights however they were stored."""
    import torch  # deferred: heavy

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _pip_requirements() -> list[str]:
    """Pinned requirements given explicitly: MLflow's inference would load the model in a
    subprocess (seconds of CPU) to find the same list."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "torch", "numpy")]


def _example(example: np.ndarray) -> np.ndarray:
    """At least two float32 N×C×H×W rows, so ``torch.export`` keeps the batch dimension dynamic."""
    ex = np.ascontiguousarray(np.asarray(example, dtype=np.float32)[:4])
    if ex.ndim != 4 or ex.shape[0] == 0:
        raise DataError(f"example has shape {ex.shape}: pass a float32 N×C×H×W batch")
    return np.concatenate([ex, ex]) if ex.shape[0] == 1 else ex


def _class_names(
    cpu_model: torch.nn.Module, ex: np.ndarray, classes: list[str] | tuple[str, ...] | None
) -> list[str]:
    """``classes`` checked against the model's outputs; the output indices when not given."""
    import torch  # deferred: heavy

    with torch.no_grad():
        outputs = int(cpu_model(torch.from_numpy(ex)).shape[1])
    if not classes:
        return [str(i) for i in range(outputs)]
    if len(classes) != outputs:
        raise DataError(f"{len(classes)} class names for a model with {outputs} outputs")
    return [str(c) for c in classes]


def _log_once(
    run_id: str,
    cpu_model: torch.nn.Module,
    ex: np.ndarray,
    name: str,
    tags: dict[str, str],
    serialization: str,
) -> Any:
    """One ``log_model`` attempt: a LoggedModel created in the run's experiment, filled by
    ``mlflow.pytorch.log_model(model_id=, run_id=)`` (no fluent active run involved)."""
    import mlflow  # deferred: heavy
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        out = cpu_model(torch.from_numpy(ex)).detach().numpy()
    c = client()
    with errors(f"creation of logged model {name!r} in run {run_id}"):
        experiment = c.get_run(run_id).info.experiment_id
        logged = c.create_logged_model(experiment, name=name, source_run_id=run_id, tags=tags)
    try:
        with errors(f"log_model {name!r} to run {run_id}"):
            return mlflow.pytorch.log_model(
                cpu_model,
                name=name,
                model_id=logged.model_id,
                run_id=run_id,
                input_example=ex,
                signature=infer_signature(ex, out),
                serialization_format=serialization,
                pip_requirements=_pip_requirements(),
            )
    except TrackingError:
        raise
    except Exception as exc:  # torch.export tracing failures come in many types
        if serialization != "pt2":
            raise
        raise ExportError(
            f"torch.export could not trace {type(cpu_model).__name__} for {name!r} "
            f"({first_line(exc, 200)}): make its forward export-friendly or log it with "
            "serialization='pickle'"
        ) from exc


def _image_signature() -> Any:
    """Input: a column ``image`` of PNG/JPEG bytes (base64 in JSON); output: class, probability."""
    from mlflow.models import ModelSignature  # deferred: heavy
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("binary", "image")]),
        outputs=Schema([ColSpec("string", "class"), ColSpec("double", "probability")]),
    )


def _image_example(ex: np.ndarray) -> Any:
    """The served model's input for one image: the first example row as PNG bytes in the
    ``image`` column (MLflow stores it base64 in ``serving_input_example.json`` and checks that
    the logged model answers it); None for channel counts PNG has no mode for."""
    import io

    import pandas as pd  # deferred: heavy
    from PIL import Image

    pixels = np.clip(np.rint(ex[0] * 255.0), 0, 255).astype(np.uint8)
    if pixels.shape[0] not in (1, 3):
        return None
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return pd.DataFrame({IMAGE_COLUMN: [buf.getvalue()]})


def _log_pyfunc(
    run_id: str,
    cpu_model: torch.nn.Module,
    ex: np.ndarray,
    name: str,
    tags: dict[str, str],
    classes: list[str],
) -> Any:
    """The image pyfunc (``warmstart.serving``): the ``torch.export`` graph as artifact
    ``program``, input shape and class names as ``meta`` and in the MLmodel's metadata."""
    import mlflow  # deferred: heavy
    import torch
    from torch.export import Dim

    try:
        program = torch.export.export(
            cpu_model, (torch.from_numpy(ex),), dynamic_shapes=({0: Dim.AUTO},)
        )
    except Exception as exc:  # torch.export tracing failures come in many types
        raise ExportError(
            f"torch.export could not trace {type(cpu_model).__name__} for {name!r} "
            f"({first_line(exc, 200)}): make its forward export-friendly or log it with "
            "serialization='pickle'"
        ) from exc
    meta = {"input_shape": list(ex.shape[1:]), "classes": classes}
    c = client()
    with errors(f"creation of logged model {name!r} in run {run_id}"):
        experiment = c.get_run(run_id).info.experiment_id
        logged = c.create_logged_model(experiment, name=name, source_run_id=run_id, tags=tags)
    with tempfile.TemporaryDirectory() as tmp:
        torch.export.save(program, Path(tmp) / PT2_FILE)
        (Path(tmp) / "meta.json").write_text(json.dumps(meta))
        with errors(f"log_model {name!r} to run {run_id}"):
            return mlflow.models.Model.log(
                artifact_path=None,
                name=name,
                flavor=mlflow.pyfunc,
                run_id=run_id,
                model_id=logged.model_id,
                python_model=str(Path(__file__).with_name("pyfunc_code.py")),
                artifacts={"program": str(Path(tmp) / PT2_FILE), "meta": f"{tmp}/meta.json"},
                signature=_image_signature(),
                input_example=_image_example(ex),
                metadata=meta,
                pip_requirements=[*_pip_requirements(), "pillow", "pandas"],
            )


def log_model(
    run_id: str,
    model: torch.nn.Module,
    *,
    example: np.ndarray,
    name: str = "model",
    tags: Mapping[str, Any] | None = None,
    serialization: Serialization = "auto",
    classes: list[str] | tuple[str, ...] | None = None,
) -> LoggedModel:
    """Log a classifier (float32 N×C×H×W in [0, 1] → logits) into run ``run_id``, from any thread.

    pt2 (the default): the image pyfunc of ``warmstart.serving`` around the ``torch.export``
    graph, with ``classes`` (default: the output indices) as its class names. pickle: an
    ``mlflow.pytorch`` model that takes tensors only. The input shape comes from ``example``; the
    model is copied to CPU in eval mode first, so the artifact loads on any machine. ``auto``:
    pt2, falling back to pickle when ``torch.export`` cannot trace the model.
    """
    ex = _example(example)
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    digest = weights_sha256(cpu_model)
    clean = safe_tags({**(tags or {}), "weights_sha256": digest})
    formats = ["pt2", "pickle"] if serialization == "auto" else [serialization]
    for fmt in formats:
        try:
            if fmt == "pt2":
                names = _class_names(cpu_model, ex, classes)
                info = _log_pyfunc(run_id, cpu_model, ex, name, clean, names)
            else:
                info = _log_once(run_id, cpu_model, ex, name, clean, fmt)
        except ExportError as exc:
            if fmt == formats[-1]:
                raise
            log.warning("%s; logging it as pickle instead", exc)
            continue
        return LoggedModel(info.model_uri, info.model_id, run_id, fmt, digest)
    raise AssertionError("unreachable")  # pragma: no cover


def _version_and_tags(uri: str) -> tuple[str, str | None, str | None, dict[str, str]]:
    """(pinned uri, name, version, tags) for a models:/ URI; other URIs pass through untagged."""
    c = client()
    with errors(f"lookup of model {uri}"):
        if m := _ALIAS.fullmatch(uri):
            mv = c.get_model_version_by_alias(m.group(1), m.group(2))
        elif m := _VERSION.fullmatch(uri):
            mv = c.get_model_version(m.group(1), m.group(2))
        elif m := _LOGGED.fullmatch(uri):
            logged = c.get_logged_model(m.group(1))
            return uri, logged.name, None, dict(logged.tags or {})
        else:
            return uri, None, None, {}
    return f"models:/{mv.name}/{mv.version}", mv.name, str(mv.version), dict(mv.tags or {})


def _shapes(uri: str) -> tuple[tuple[int, int, int], int | None]:
    """((C, H, W), number of outputs or None) from the model's MLflow signature."""
    import mlflow  # deferred: heavy

    try:
        with errors(f"read of the MLmodel of {uri}"):
            info = mlflow.models.get_model_info(uri)
    except OSError as exc:  # artifact download failed (S3 behind the tracking server)
        raise TrackingError(
            f"could not read the MLmodel of {uri} ({first_line(exc)}): check that the MLflow "
            "server and its S3 store are up (`warmstart status`)"
        ) from None
    meta, sig = info.metadata or {}, info.signature
    if "input_shape" in meta and "classes" in meta:  # the image pyfunc (warmstart.serving)
        c, h, w = (int(v) for v in meta["input_shape"])
        return (c, h, w), len(meta["classes"])
    if sig is None or sig.inputs is None or not sig.inputs.is_tensor_spec():
        raise TrackingError(
            f"model {uri} has no tensor input signature: log it with "
            "warmstart.tracking.log_model (float32 N×C×H×W) to use it for prediction"
        )
    shape = tuple(int(s) for s in sig.inputs.inputs[0].shape)
    if len(shape) != 4 or shape[1] not in (1, 3) or min(shape[2:]) < 1:
        raise TrackingError(
            f"model {uri} expects input of shape {shape}, not images N×C×H×W with 1 or 3 "
            "channels: prediction supports image classifiers only"
        )
    outputs = None
    if sig.outputs is not None and sig.outputs.is_tensor_spec():
        out_shape = sig.outputs.inputs[0].shape
        if len(out_shape) == 2 and int(out_shape[1]) > 0:
            outputs = int(out_shape[1])
    return (shape[1], shape[2], shape[3]), outputs


def resolve_model(model_uri: str) -> ResolvedModel:
    """Pin ``models:/name@alias`` to its version (so a concurrent promotion cannot mix two
    models) and read the input and output shapes; ``models:/name/version`` and ``models:/m-…``
    are read as they are. No weights are loaded."""
    uri = model_uri.strip()
    try:
        pinned, name, version, tags = _version_and_tags(uri)
        shape, outputs = _shapes(pinned)
    except NotFound as exc:
        raise NotFound(
            f"model {uri} not found ({exc}); models:/warmstart-<target>@champion exists once a "
            "gate has passed, models:/<name>/<version> names any registered version"
        ) from None
    return ResolvedModel(uri, pinned, name, version, shape, outputs, tags)


def load_pyfunc(uri: str) -> Any:
    """The ``mlflow.pyfunc`` model behind ``uri`` (pt2 artifacts load without unpickling)."""
    import mlflow  # deferred: heavy
    import requests
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pyfunc.load_model(uri)
    except Exception as exc:
        if "pickle" in str(exc).lower():
            raise UnusableModel(
                f"could not load {uri} ({first_line(exc, 240)}): a pickle-format model needs "
                "MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true and the models package installed"
            ) from None
        if isinstance(exc, MlflowException | requests.RequestException | OSError):
            raise explain(exc, f"download of {uri}") from None
        raise UnusableModel(
            f"could not load {uri} ({type(exc).__name__}: {first_line(exc, 200)}): re-log the "
            "model with this version of torch and mlflow"
        ) from None


def _tensor_path(model: Any) -> Any:
    """The image pyfunc's ``logits`` (its signature takes images); any other pyfunc's predict."""
    try:
        inner = model.unwrap_python_model()
    except Exception:  # not a PythonModel (an mlflow.pytorch pickle model): plain predict
        return model.predict
    return getattr(inner, "logits", model.predict)


def predict_logits(
    model: Any, uri: str, images: np.ndarray, *, batch_size: int = 256
) -> np.ndarray:
    """Logits of a loaded pyfunc model on float32 N×C×H×W images in [0, 1], in batches."""
    x = np.ascontiguousarray(np.asarray(images, dtype=np.float32))
    run = _tensor_path(model)
    out = []
    for start in range(0, len(x), batch_size):
        try:
            out.append(np.asarray(run(x[start : start + batch_size]), dtype=np.float64))
        except Exception as exc:  # schema enforcement or the graph itself
            raise UnusableModel(
                f"{uri} failed on a batch of shape {x[start : start + batch_size].shape} "
                f"({first_line(exc, 240)}): its input signature differs from these images"
            ) from None
    return np.concatenate(out) if out else np.zeros((0, 0))
