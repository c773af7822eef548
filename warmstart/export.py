"""`warmstart export`: a registered version as a portable file, by torch's own exporters.

``export("models:/warmstart-uci-digits-5-9@champion", "onnx", "out/")`` writes
``out/model.onnx`` (``torch.onnx.export(..., dynamo=True)``), ``model.torchscript.pt``
(``torch.jit.trace``) or ``model.pt2`` (``torch.export``) and ``out/model.json``, the sidecar that
says what goes in and what comes out.

The exported graph takes **uint8 images N×C×H×W at the model's own size** (0-255) and returns
logits N×K: the scaling to float in [0, 1] the model was trained on is inside the graph. What
the caller does first is what ``warmstart predict`` does (``warmstart.predict.convert_image``):
decode, convert to the model's channels (gray → RGB replicates, RGB → gray is ITU-R 601-2 luma,
alpha dropped), resize to H×W (area average when shrinking, bilinear when enlarging); softmax of
the logits gives the probabilities, in the order of the sidecar's ``classes``.

Every export is checked before it is kept: the exported file, run by its own runtime
(onnxruntime, ``torch.jit.load``, ``torch.export.load``), against the registered graph in eager
torch on the same images; more than ``PARITY_TOLERANCE`` apart is an error. The files are then
logged beside the version (artifacts ``exports/v<version>/<format>/`` of its run, tags
``export.<format>.uri`` and ``export.<format>.sha256``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from warmstart import tracking
from warmstart.errors import ConfigError, TrackingError
from warmstart.predict import ServedModel, resolve_model
from warmstart.tracking import exports as tracked

if TYPE_CHECKING:
    import torch

FORMATS = {
    "onnx": "model.onnx",
    "torchscript": "model.torchscript.pt",
    "exported-program": "model.pt2",
}
SIDECAR = "model.json"
PARITY_TOLERANCE = 1e-4  # max abs difference of logits, exported runtime vs eager torch
PARITY_IMAGES = 32  # random uint8 images the export is checked on when none are given
OPSET = 18
CALLER_STEPS = [
    "decode the image file (PNG, JPEG, ...) to 8-bit pixels",
    "convert to the model's channels: gray -> RGB replicates the channel, RGB -> gray is "
    "ITU-R 601-2 luma (L = 0.299 R + 0.587 G + 0.114 B), alpha is dropped",
    "resize to the model's H x W: area average when shrinking, bilinear when enlarging "
    "(warmstart.predict.convert_image does all three)",
    "stack as uint8 N x C x H x W (channels first), values 0-255",
    "softmax over the K logits gives the probabilities, in the order of 'classes'",
]


class ExportFailed(TrackingError):
    """The exporter could not convert the graph, or its output differs from eager torch."""


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    return fmt


def image_module(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` (float32 in [0, 1] → logits) behind uint8 input: the scaling is in the graph."""
    import torch  # deferred: heavy

    class ImageInput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.training = False  # the traced graph cannot switch modes; this wrapper has none

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.net(image.to(torch.float32) / 255.0)

    return ImageInput()


def _write(module: torch.nn.Module, fmt: str, path: Path, example: torch.Tensor) -> None:
    """One exporter, on uint8 ``example`` images with a dynamic batch dimension."""
    import torch  # deferred: heavy
    from torch.export import Dim

    dynamic = ({0: Dim("batch", min=1, max=65536)},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit's deprecation and the exporters' progress notes
        if fmt == "onnx":
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                dynamic_shapes=dynamic,
                input_names=["image"],
                output_names=["logits"],
                opset_version=OPSET,
                verbose=False,
            )
            program.save(str(path))
        elif fmt == "torchscript":
            torch.jit.trace(module, (example,), check_trace=False).save(str(path))
        else:
            torch.export.save(torch.export.export(module, (example,), dynamic_shapes=dynamic), path)


def run_export(path: Path, fmt: str, images: np.ndarray) -> np.ndarray:
    """Logits of uint8 N×C×H×W ``images`` by the exported file, run by its own runtime."""
    import torch  # deferred: heavy

    x = np.ascontiguousarray(images, dtype=np.uint8)
    if fmt == "onnx":
        import onnxruntime  # deferred: heavy

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(["logits"], {"image": x})[0])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            out = torch.jit.load(str(path), map_location="cpu")(torch.from_numpy(x))
        else:
            out = torch.export.load(str(path)).module()(torch.from_numpy(x))
    return out.detach().numpy()


def eager_logits(net: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """The registered graph's logits in eager torch, fed as the pyfunc feeds it (x / 255)."""
    import torch  # deferred: heavy

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).to(torch.float32)
        return net(x / 255.0).detach().numpy()


def parity_images(served: ServedModel, n: int = PARITY_IMAGES) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, served.channels, *served.size), dtype=np.uint8)


def sidecar(served: ServedModel, fmt: str, sha256: str, parity: dict) -> dict:
    """What the exported file takes and gives, JSON-able (written beside it as model.json)."""
    c, (h, w) = served.channels, served.size
    return {
        "model_uri": served.uri,
        "requested_model": served.requested,
        "name": served.name,
        "version": served.version,
        "format": fmt,
        "file": FORMATS[fmt],
        "sha256": sha256,
        "input": {"name": "image", "dtype": "uint8", "shape": ["N", c, h, w], "range": [0, 255]},
        "output": {"name": "logits", "dtype": "float32", "shape": ["N", len(served.classes)]},
        "classes": served.classes,
        "in_graph": ["uint8 -> float32 / 255 (the model's input scaling)"],
        "caller_must": CALLER_STEPS,
        "parity": parity,
    }


def _check_out(out_dir: str, fmt: str) -> Path:
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out_dir}: is a file; name a folder for {FORMATS[fmt]}")
    return out


def export(
    model_uri: str,
    fmt: str,
    out_dir: str,
    *,
    images: np.ndarray | None = None,
    log: bool = True,
) -> dict:
    """Export ``model_uri`` as ``fmt`` into ``out_dir``, check parity on ``images`` (uint8
    N×C×H×W; PARITY_IMAGES random ones by default), keep it beside the version when ``log``.
    Returns the sidecar, with ``path`` and ``logged_to`` added."""
    import torch  # deferred: heavy

    check_format(fmt)
    out = _check_out(out_dir, fmt)
    tracking.check_server()
    served = resolve_model(model_uri)
    net = tracked.load_program(served.uri)
    check = parity_images(served) if images is None else np.asarray(images, dtype=np.uint8)
    out.mkdir(parents=True, exist_ok=True)
    path = out / FORMATS[fmt]
    try:
        _write(image_module(net), fmt, path, torch.from_numpy(check[:2].copy()))
    except Exception as exc:  # exporter failures come in many types
        raise ExportFailed(
            f"torch could not export {served.uri} as {fmt} ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}): try "
            "another --format"
        ) from None
    diff = float(np.abs(run_export(path, fmt, check) - eager_logits(net, check)).max())
    if not diff <= PARITY_TOLERANCE:
        path.unlink(missing_ok=True)
        raise ExportFailed(
            f"the {fmt} export of {served.uri} differs from torch by {diff:.2e} on "
            f"{len(check)} images (at most {PARITY_TOLERANCE:g}): not kept; try another --format"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    parity = {"images": len(check), "max_abs_diff": diff, "tolerance": PARITY_TOLERANCE}
    meta = sidecar(served, fmt, digest, parity)
    (out / SIDECAR).write_text(json.dumps(meta, indent=2) + "\n")
    logged = None
    if log and served.name and served.version:
        files = {path.name: path.read_bytes(), SIDECAR: (out / SIDECAR).read_bytes()}
        logged = tracked.log_export(served.name, served.version, files, fmt, digest)
    return {**meta, "path": str(path), "logged_to": logged}
