"""Batch prediction with a registered model: a folder of images in, one row per image out.

``predict("models:/warmstart-uci-digits-5-9@champion", "photos/", "preds.csv")`` resolves the
alias to one version (so a concurrent promotion cannot mix two models), reads the model's input
shape (C×H×W) from its MLflow model, converts every image to it explicitly, and writes
``file, class, probability`` (or the top-k layout of ``warmstart.reports.predict``) as CSV or
parquet, locally or to ``s3://``. Files that are not images (by extension: ``notes.txt``) are
skipped with a warning and counted; images in class sub-folders named like the model's classes
are scored (accuracy, and a confusion matrix CSV next to the output).

Conversions are explicit and bounded: gray → RGB replicates the channel, RGB → gray uses the
ITU-R 601-2 luma (as the ImageFolder loader does for training data), alpha is dropped, sizes are
resized (area average when shrinking, bilinear when enlarging). Refused, with the file named:
undecodable image files, 16-bit or float images (converting would clip), images that
would need more than ``MAX_UPSCALE``× enlargement, and aspect ratios more than
``MAX_ASPECT_DISTORTION``× away from the model's.

Class names come from the target dataset's manifest in S3 (the version's
``target_dataset_hash`` tag); without one the classes are the output indices ``0..K-1``.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from warmstart import storage, tracking
from warmstart.data.imagefolder import GRAY_MODES, IMAGE_EXTENSIONS, is_hidden
from warmstart.data.store import read_manifest
from warmstart.data.transforms import resize_image
from warmstart.errors import ConfigError, DataError, StorageError, TrackingError, WarmstartError
from warmstart.reports import predict as predict_report
from warmstart.settings import redact

log = logging.getLogger(__name__)

MAX_UPSCALE = 8.0  # refuse images that must be enlarged more than this per axis
MAX_ASPECT_DISTORTION = 4.0  # refuse images whose aspect ratio is this far from the model's
DEEP_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")  # >8 bits: converting would clip
OUTPUT_FORMATS = (".csv", ".parquet")


@dataclass(frozen=True)
class ServedModel:
    """A model resolved to one exact URI, with what predictions need to know about it."""

    requested: str  # what the user asked for, e.g. models:/name@champion
    uri: str  # what is loaded, e.g. models:/name/3 (alias pinned to a version)
    name: str | None
    version: str | None
    channels: int
    size: tuple[int, int]  # (H, W)
    classes: list[str]
    classes_from: str  # "dataset <hash12>" or "output indices (...)"


@dataclass
class ImageBatch:
    """Decoded images (uint8 N×C×H×W) with their names and the conversions applied."""

    files: list[str]
    images: np.ndarray
    conversions: Counter = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)  # files that are not images, not read


# ------------------------------------------------------------------ the model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return redact(text[:240])


def _class_names(tags: dict[str, str], outputs: int | None) -> tuple[list[str] | None, str]:
    """Class names from the target dataset's manifest (S3), or None and why not."""
    digest = tags.get("target_dataset_hash")
    if not digest:
        return None, "output indices (the model has no target_dataset_hash tag)"
    try:
        classes = [str(c) for c in read_manifest(digest)["classes"]]
    except (DataError, StorageError, KeyError) as exc:
        log.warning("class names of dataset %s unavailable (%s): using indices", digest[:12], exc)
        return None, f"output indices (dataset {digest[:12]} manifest unreadable)"
    if outputs is not None and len(classes) != outputs:
        return None, f"output indices (dataset {digest[:12]} has {len(classes)} classes)"
    return classes, f"dataset {digest[:12]}"


def resolve_model(model_uri: str) -> ServedModel:
    """Pin an alias to its version and read input shape and class names (no weights loaded)."""
    if not model_uri.strip():
        raise ConfigError("--model is empty: give models:/warmstart-<target>@champion")
    model = tracking.resolve_model(model_uri)
    classes, origin = _class_names(model.tags, model.outputs)
    if classes is None:
        if model.outputs is None:
            raise TrackingError(
                f"model {model.requested} has neither class names (target_dataset_hash tag) nor "
                "an output signature: log it with warmstart.tracking.log_model"
            )
        classes = [str(i) for i in range(model.outputs)]
    c, h, w = model.input_shape
    return ServedModel(
        model.requested, model.uri, model.name, model.version, c, (h, w), classes, origin
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def run_model(served: ServedModel, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N×K) of uint8 N×C×H×W images, in batches."""
    model = tracking.load_pyfunc(served.uri)
    probs = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].astype(np.float32) / 255.0
        logits = tracking.predict_logits(model, served.uri, x, batch_size=batch_size)
        if logits.ndim != 2 or logits.shape[1] != len(served.classes):
            raise TrackingError(
                f"{served.uri} returned shape {logits.shape}, expected (N, {len(served.classes)}) "
                "logits: batch prediction needs a classifier"
            )
        probs.append(softmax(logits))
    if not probs:
        return np.zeros((0, len(served.classes)))
    return np.concatenate(probs)


# ------------------------------------------------------------------ the images


def list_images(images: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(name relative to ``images``, location) for every image under a local folder, a single
    file, or an ``s3://bucket/prefix``, sorted by name; and the names of the other visible files
    (not images by extension), which are skipped."""
    found = _list_s3(images) if images.startswith("s3://") else _list_local(images)
    if not found:
        raise DataError(f"{images} holds no files: point --images at a folder of images")
    keep = [(name, loc) for name, loc in found if loc.lower().endswith(IMAGE_EXTENSIONS)]
    skipped = [name for name, loc in found if not loc.lower().endswith(IMAGE_EXTENSIONS)]
    if not keep:
        raise DataError(
            f"{images} holds no images ({', '.join(IMAGE_EXTENSIONS)}), only {len(skipped)} "
            f"other file(s) such as {skipped[0]}: point --images at a folder of images"
        )
    return keep, skipped


def _list_local(images: str) -> list[tuple[str, str]]:
    root = Path(images).expanduser()
    if not root.exists():
        raise DataError(f"{images} does not exist: give a folder of images or s3://bucket/prefix")
    if root.is_file():
        return [(root.name, str(root))]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for fname in filenames:
            if not is_hidden(fname):
                path = Path(dirpath) / fname
                out.append((path.relative_to(root).as_posix(), str(path)))
    return sorted(out)


def _list_s3(images: str) -> list[tuple[str, str]]:
    root = storage.parse_s3_uri(images)
    if root.key and not root.key.endswith("/") and storage.exists(root):
        return [(root.key.rsplit("/", 1)[-1], str(root))]
    prefix = root.key.rstrip("/") + "/" if root.key else ""
    out = []
    for key in storage.list_keys(storage.S3Uri(root.bucket, prefix)):
        rel = key[len(prefix) :]
        if rel and not key.endswith("/") and not any(map(is_hidden, rel.split("/"))):
            out.append((rel, f"s3://{root.bucket}/{key}"))
    return sorted(out)


def _read(location: str) -> bytes:
    if location.startswith("s3://"):
        return storage.get_bytes(storage.parse_s3_uri(location))
    return Path(location).read_bytes()


def _to_channels(img, name: str, channels: int, done: list[str]):
    """The decoded image in the model's channel count (gray → RGB replicates, RGB → gray is
    luma); deeper than 8 bits is refused, since converting would clip it."""
    if img.mode in DEEP_MODES:
        raise DataError(
            f"{name} is a {img.mode} (more than 8 bits per pixel) image: converting it to the "
            "model's 8-bit input would clip it; save it as 8-bit PNG/JPEG first"
        )
    gray = img.mode in GRAY_MODES
    if channels == 1:
        if not gray:
            done.append("rgb->gray")
        return img.convert("L") if gray else img.convert("RGB").convert("L")
    if gray:
        done.append("gray->rgb")
    return img.convert("RGB")


def _decode(data: bytes, name: str, channels: int, done: list[str]) -> np.ndarray:
    """H×W or H×W×C uint8 pixels, or a DataError naming the file."""
    from PIL import Image, UnidentifiedImageError  # deferred: heavy

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return np.asarray(_to_channels(img, name, channels, done))
    except WarmstartError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as exc:
        raise DataError(
            f"{name} is not a readable image ({type(exc).__name__}: {_first_line(exc)[:120]}): "
            "replace it or remove it from the folder"
        ) from None


def _check_resize(name: str, h: int, w: int, th: int, tw: int) -> None:
    """Refuse enlargements over MAX_UPSCALE and aspect distortions over MAX_ASPECT_DISTORTION."""
    scale = max(th / h, tw / w)
    if scale > MAX_UPSCALE:
        raise DataError(
            f"{name} is {w}x{h} pixels: the model's {tw}x{th} input would need "
            f"{scale:.1f}x enlargement (at most {MAX_UPSCALE:g}x); use images of at least "
            f"{-(-tw // int(MAX_UPSCALE))}x{-(-th // int(MAX_UPSCALE))} pixels"
        )
    distortion = (w / h) / (tw / th)
    if max(distortion, 1 / distortion) > MAX_ASPECT_DISTORTION:
        raise DataError(
            f"{name} is {w}x{h} pixels: squeezing it into the model's {tw}x{th} input "
            f"distorts its aspect ratio {max(distortion, 1 / distortion):.1f}x (at most "
            f"{MAX_ASPECT_DISTORTION:g}x); crop it closer to {tw}:{th} first"
        )


def convert_image(
    data: bytes, name: str, *, channels: int, size: tuple[int, int]
) -> tuple[np.ndarray, list[str]]:
    """Decode one image and convert it to C×H×W uint8, or refuse it with a DataError naming it.

    Returns the array and the conversions applied (``"gray->rgb"``, ``"resize 28x28->8x8"`` ...).
    """
    done: list[str] = []
    arr = _decode(data, name, channels, done)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    (h, w), (th, tw) = arr.shape[1:], size
    if (h, w) != (th, tw):
        _check_resize(name, h, w, th, tw)
        arr = resize_image(np.ascontiguousarray(arr), (th, tw))
        done.append(f"resize {w}x{h}->{tw}x{th}")
    return np.ascontiguousarray(arr), done


def load_images(
    images: str, *, channels: int, size: tuple[int, int], threads: int = 8
) -> ImageBatch:
    """List, read (S3 in parallel threads) and convert every image under ``images``."""
    found, skipped = list_images(images)
    if skipped:
        log.warning(
            "skipped %d file(s) that are not images: %s%s",
            len(skipped),
            ", ".join(skipped[:5]),
            ", ..." if len(skipped) > 5 else "",
        )
    with ThreadPoolExecutor(max_workers=threads) as pool:
        blobs = list(pool.map(_read, [loc for _, loc in found]))
    batch = np.empty((len(found), channels, *size), dtype=np.uint8)
    conversions: Counter = Counter()
    for i, ((_, loc), data) in enumerate(zip(found, blobs, strict=True)):
        batch[i], done = convert_image(data, loc, channels=channels, size=size)
        conversions.update(done)
    return ImageBatch([name for name, _ in found], batch, conversions, skipped)


# ------------------------------------------------------------------ the output


def check_out(out: str) -> str:
    """The output format (``csv`` or ``parquet``) of ``out``, or a ConfigError before any work."""
    suffix = Path(out.rstrip("/")).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(
            f"--out {out}: name a .csv or .parquet file (local path or s3://bucket/key)"
        )
    if out.startswith("s3://"):
        storage.parse_s3_uri(out)
    return suffix[1:]


def _put(data: bytes, out: str, content_type: str) -> str:
    """Write bytes to a local path (atomically) or ``s3://``; returns where."""
    if out.startswith("s3://"):
        target = storage.parse_s3_uri(out)
        storage.put_bytes(target, data, content_type=content_type)
        return str(target)
    path = Path(out).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        raise ConfigError(
            f"--out {out}: cannot write there ({exc.strerror}); choose another path"
        ) from None
    return str(path)


def write_predictions(frame, out: str) -> str:
    """Write the frame as CSV or parquet to a local path or ``s3://``; returns where."""
    if check_out(out) == "csv":
        return _put(frame.to_csv(index=False).encode(), out, "text/csv")
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return _put(buf.getvalue(), out, "application/vnd.apache.parquet")


def write_evaluation(batch: ImageBatch, served: ServedModel, probs: np.ndarray, out: str) -> dict:
    """Accuracy and the confusion matrix CSV next to ``out`` when the images sit in class
    sub-folders named like the model's classes; ``{}`` otherwise."""
    scored = predict_report.evaluate(batch.files, served.classes, probs.argmax(axis=1))
    if scored is None:
        return {}
    where = predict_report.confusion_path(out)
    written = _put(scored["confusion"].to_csv(index=False).encode(), where, "text/csv")
    return {"accuracy": scored["accuracy"], "labelled": scored["labelled"], "confusion": written}


# ------------------------------------------------------------------ all together


def summary(
    served: ServedModel, batch: ImageBatch, written: str, probs: np.ndarray, scored: dict
) -> dict:
    """What a prediction run did, JSON-able (returned by the flow, printed by the CLI)."""
    top = probs.max(axis=1) if len(probs) else probs
    return {
        "model_uri": served.uri,
        "requested_model": served.requested,
        "model_name": served.name,
        "version": served.version,
        "input_shape": [served.channels, *served.size],
        "classes": served.classes,
        "classes_from": served.classes_from,
        "images": len(batch.files),
        "skipped": list(batch.skipped),
        "conversions": dict(batch.conversions),
        "mean_probability": float(top.mean()) if len(top) else None,
        "out": written,
        "accuracy": scored.get("accuracy"),
        "labelled": scored.get("labelled", 0),
        "confusion": scored.get("confusion"),
    }


def write_all(
    served: ServedModel, batch: ImageBatch, probs: np.ndarray, out: str, top_k: int = 1
) -> dict:
    """Write the predictions (and the evaluation, when labelled); returns ``summary(...)``."""
    frame = predict_report.predictions_frame(batch.files, served.classes, probs, top_k)
    written = write_predictions(frame, out)
    return summary(served, batch, written, probs, write_evaluation(batch, served, probs, out))


def predict(
    model_uri: str, images: str, out: str, *, batch_size: int = 256, top_k: int = 1
) -> dict:
    """Predict every image under ``images`` with ``model_uri``; write the ``top_k`` most
    probable classes per image to ``out`` (.csv or .parquet, local or s3://)."""
    check_out(out)
    predict_report.check_top_k(top_k)
    tracking.check_server()  # a server that is not up at all is reported at once
    served = resolve_model(model_uri)
    predict_report.check_top_k(top_k, len(served.classes))
    batch = load_images(images, channels=served.channels, size=served.size)
    probs = run_model(served, batch.images, batch_size=batch_size)
    return write_all(served, batch, probs, out, top_k)
