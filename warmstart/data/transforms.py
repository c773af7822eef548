"""Explicit conversions on canonical arrays (uint8 N×C×H×W): class selection, channels,
content crop and area resizing. Each returns the new dataset and appends a record to its
provenance, so a source→target conversion is never silent."""

from __future__ import annotations

import numpy as np
from PIL import Image

from warmstart.data.dataset import ImageDataset
from warmstart.errors import DataError


def _record(ds: ImageDataset, op: dict) -> dict:
    prov = dict(ds.provenance)
    prov["conversions"] = list(prov.get("conversions", [])) + [op]
    return prov


def resolve_classes(tokens: tuple[str, ...], classes: list[str], *, where: str) -> list[int]:
    """Class indices for selection tokens, in the given order.

    A token equal to a class name selects that class; otherwise an integer is a class index and
    ``a-b`` an inclusive index range. Unknown names, out-of-range indices and repeats raise.
    """
    out: list[int] = []
    for token in tokens:
        if token in classes:
            out.append(classes.index(token))
            continue
        lo, dash, hi = token.partition("-")
        if lo.isdigit() and (not dash or hi.isdigit()):
            first, last = int(lo), int(hi) if dash else int(lo)
            if first > last or last >= len(classes):
                raise DataError(
                    f"{where}: classes={token} is outside 0..{len(classes) - 1}; "
                    f"pick indices or names from {classes}"
                )
            out.extend(range(first, last + 1))
            continue
        raise DataError(
            f"{where}: class {token!r} does not exist; choose from {classes} (names or indices)"
        )
    if len(set(out)) != len(out):
        raise DataError(f"{where}: classes={','.join(tokens)} names a class twice; list each once")
    return out


def select_classes(ds: ImageDataset, tokens: tuple[str, ...]) -> ImageDataset:
    """Keep the named classes and relabel them 0..k-1 in the given order (names kept)."""
    picked = resolve_classes(tokens, ds.classes, where=f"dataset {ds.name}")
    remap = np.full(ds.num_classes, -1, dtype=np.int64)
    remap[picked] = np.arange(len(picked))
    keep = remap[ds.labels] >= 0
    classes = [ds.classes[i] for i in picked]
    prov = _record(ds, {"op": "select_classes", "classes": classes, "source_indices": picked})
    return ImageDataset(
        images=ds.images[keep],
        labels=remap[ds.labels[keep]],
        classes=classes,
        provenance=prov,
        predefined_test=None if ds.predefined_test is None else ds.predefined_test[keep],
        name=ds.name,
    )


def to_gray(images: np.ndarray) -> np.ndarray:
    """RGB → luma with PIL's integer ITU-R 601-2 formula (bit-identical to ``convert("L")``)."""
    rgb = images.astype(np.uint32)
    y = (rgb[:, 0] * 19595 + rgb[:, 1] * 38470 + rgb[:, 2] * 7471 + 0x8000) >> 16
    return y[:, None].astype(np.uint8)


def convert_channels(ds: ImageDataset, channels: int) -> ImageDataset:
    if ds.channels == channels:
        return ds
    if channels == 3:
        images, method = np.repeat(ds.images, 3, axis=1), "replicate gray"
    else:
        images, method = to_gray(ds.images), "luma ITU-R 601-2"
    op = {"op": "channels", "from": ds.channels, "to": channels, "method": method}
    return _replace_images(ds, images, op)


def _replace_images(ds: ImageDataset, images: np.ndarray, op: dict) -> ImageDataset:
    return ImageDataset(
        images=images,
        labels=ds.labels,
        classes=ds.classes,
        provenance=_record(ds, op),
        predefined_test=ds.predefined_test,
        name=ds.name,
    )


def content_box(image: np.ndarray, *, threshold: float = 0.0) -> tuple[int, int, int, int] | None:
    """Square (top, left, side, side) box around the non-background pixels of one C×H×W image.

    Background is the per-channel median of the border pixels; a pixel is content when it differs
    from it by more than ``threshold`` (0..255). Returns None for a blank image.
    """
    c, h, w = image.shape
    border = np.concatenate(
        [image[:, 0, :], image[:, -1, :], image[:, :, 0], image[:, :, -1]], axis=1
    )
    bg = np.median(border, axis=1).reshape(c, 1, 1)
    mask = (np.abs(image.astype(np.int16) - bg) > threshold).any(axis=0)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(bottom - top, right - left)
    top = (top + bottom - side) // 2
    left = (left + right - side) // 2
    return int(top), int(left), int(side), int(side)


def crop_content(image: np.ndarray, *, threshold: float = 0.0) -> np.ndarray:
    """Crop one C×H×W image to its square content box, padding with the background value."""
    box = content_box(image, threshold=threshold)
    if box is None:
        return image
    top, left, side, _ = box
    c, h, w = image.shape
    border = np.concatenate(
        [image[:, 0, :], image[:, -1, :], image[:, :, 0], image[:, :, -1]], axis=1
    )
    bg = np.median(border, axis=1).astype(np.uint8)
    out = np.empty((c, side, side), dtype=np.uint8)
    out[:] = bg.reshape(c, 1, 1)
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + side, h), min(left + side, w)
    out[:, t0 - top : t1 - top, l0 - left : l1 - left] = image[:, t0:t1, l0:l1]
    return out


def center_crop(image: np.ndarray, keep: float, size: tuple[int, int]) -> np.ndarray:
    """The centre of one C×H×W image with ``size``'s aspect ratio, ``keep`` × its shorter side
    high: torchvision's ``Resize(r)`` + ``CenterCrop(c)`` before the final resize, with
    ``keep = c / r`` (0.875 for 256 → 224)."""
    _, h, w = image.shape
    ch = max(1, min(h, round(keep * min(h, w))))
    cw = max(1, min(w, round(ch * size[1] / size[0])))
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[:, top : top + ch, left : left + cw]


def apply_crop(image: np.ndarray, crop: str | None, size: tuple[int, int]) -> np.ndarray:
    """``crop=content`` or ``crop=center:<keep>`` on one image (then resize it to ``size``)."""
    if crop == "content":
        return crop_content(image)
    if crop is not None and crop.startswith("center:"):
        return center_crop(image, float(crop.split(":", 1)[1]), size)
    return image


def crop_record(crop: str) -> dict:
    """The provenance record of a crop."""
    if crop == "content":
        return {"op": "crop", "mode": "content", "shape": "square bounding box of non-background"}
    keep = crop.split(":", 1)[1]
    return {"op": "crop", "mode": "center", "shape": f"centre, {keep} of the shorter side"}


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize one C×H×W uint8 image: area average (PIL BOX) when shrinking, bilinear otherwise."""
    c, h, w = image.shape
    if (h, w) == tuple(size):
        return image
    method = resize_method((h, w), size)
    pil_method = Image.Resampling.BOX if method == "box" else Image.Resampling.BILINEAR
    if c == 1:
        img = Image.fromarray(image[0]).resize((size[1], size[0]), pil_method)
        return np.asarray(img)[None]
    img = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).resize(
        (size[1], size[0]), pil_method
    )
    return np.asarray(img).transpose(2, 0, 1)


def resize_method(src: tuple[int, int], dst: tuple[int, int]) -> str:
    return "box" if dst[0] <= src[0] and dst[1] <= src[1] else "bilinear"


def crop_and_resize(
    ds: ImageDataset, *, size: tuple[int, int] | None, crop: str | None
) -> ImageDataset:
    """Apply ``crop`` (``content`` or ``center:<keep>``) then resize to ``size`` (default: the
    current size)."""
    target = tuple(size) if size is not None else ds.size
    if crop is None and target == ds.size:
        return ds
    images = np.empty((len(ds), ds.channels, *target), dtype=np.uint8)
    for i, image in enumerate(ds.images):
        images[i] = resize_image(apply_crop(image, crop, target), target)
    out = ds
    if crop is not None:
        out = _replace_images(out, out.images, crop_record(crop))
    if target != ds.size or crop is not None:
        op = {
            "op": "resize",
            "from": list(ds.size) if crop is None else f"{crop.split(':')[0]} crop",
            "to": list(target),
            "method": resize_method(ds.size, target) if crop is None else "box if shrinking",
        }
        out = _replace_images(out, images, op)
    return out
