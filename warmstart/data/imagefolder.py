"""ImageFolder sources (one sub-folder per class, optional ``train/`` and ``test/`` sub-trees),
local or under ``s3://``, decoded in parallel worker processes.

File order and class order follow ``torchvision.datasets.ImageFolder``: classes sorted by name,
files sorted by (folder, name) within each class. Hidden files and folders are skipped.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from warmstart import storage
from warmstart.data.dataset import ImageDataset
from warmstart.data.decode import (  # noqa: F401 - PARALLEL_MIN, decode_all: public here too
    GRAY_MODES,
    MAX_PIXELS_ENV,
    PARALLEL_MIN,
    TOO_LARGE,
    decode_all,
)
from warmstart.data.transforms import crop_record, resolve_classes
from warmstart.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
JUNK_FILES = ("thumbs.db", "desktop.ini")  # OS litter, skipped like hidden files


@dataclass(frozen=True)
class Item:
    """One image file: where to read it, its class name, and whether it is in ``test/``."""

    name: str  # path or s3 URI, for messages
    class_name: str
    test: bool
    relpath: tuple[str, str]  # (folder relative to the class, file name): sort key
    size: int = -1  # bytes (-1: unknown)


def is_hidden(part: str) -> bool:
    """Hidden files and folders and OS litter: never samples, never class folders."""
    return part.startswith(".") or part.lower() in JUNK_FILES or part == "__MACOSX"


def _check_ext(name: str, where: str) -> None:
    if not name.lower().endswith(IMAGE_EXTENSIONS):
        raise DataError(
            f"imagefolder {where}: {name} is not a supported image type "
            f"({', '.join(IMAGE_EXTENSIONS)}); convert it or move it out of the folder"
        )


def _split_layout(top_dirs: set[str]) -> bool:
    return "train" in top_dirs and top_dirs <= {"train", "test"}


def list_local(location: str, *, follow_symlinks: bool = False) -> list[Item]:
    """The tree's image files; a file or class folder that is a link out of the tree is refused
    unless ``follow_symlinks`` (links that stay inside are fine)."""
    root = Path(location).expanduser()
    if not root.exists():
        raise DataError(
            f"imagefolder source {location} does not exist: check the path (one sub-folder per class)"
        )
    if not root.is_dir():
        raise DataError(
            f"imagefolder source {location} is not a folder: give the folder of class sub-folders"
        )
    real = root.resolve()
    top = {p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p.name)}
    trees = [("train", False), ("test", True)] if _split_layout(top) else [("", False)]
    items: list[Item] = []
    for sub, is_test in trees:
        base = root / sub if sub else root
        if not base.is_dir():
            continue
        for cls in sorted(p.name for p in base.iterdir() if p.is_dir() and not is_hidden(p.name)):
            _check_link(base / cls, real, location, follow_symlinks)
            found: list[Item] = []
            for dirpath, dirnames, filenames in os.walk(base / cls):
                dirnames[:] = [d for d in dirnames if not is_hidden(d)]
                rel = os.path.relpath(dirpath, base / cls)
                rel = "" if rel == "." else rel.replace(os.sep, "/")
                for fname in filenames:
                    if is_hidden(fname):
                        continue
                    path = os.path.join(dirpath, fname)
                    if os.path.islink(path):
                        _check_link(path, real, location, follow_symlinks)
                    _check_ext(path, location)
                    found.append(Item(path, cls, is_test, (rel, fname), os.path.getsize(path)))
            if not found and not is_test:
                raise DataError(
                    f"imagefolder {location}: class folder {base / cls} has no images; "
                    "add images or remove the folder"
                )
            items.extend(sorted(found, key=lambda it: it.relpath))
    return items


def _check_link(path: Path | str, root: Path, location: str, follow: bool) -> None:
    """Refuse a symbolic link that resolves outside the folder: a tree's content is data, and a
    link must not pull in files from elsewhere on the machine unless the user says so
    (``follow_symlinks=true``). Links that stay inside the tree are fine."""
    target = Path(path).resolve()
    if not follow and not target.is_relative_to(root):
        raise DataError(
            f"imagefolder {location}: {path} is a symbolic link to {target}, outside the folder: "
            "copy the files into the folder, or add follow_symlinks=true to the spec if you "
            "mean it"
        )


def list_s3(location: str) -> list[Item]:
    root = storage.parse_s3_uri(location)
    prefix = root.key.rstrip("/") + "/" if root.key else ""
    listed = storage.list_objects(storage.S3Uri(root.bucket, prefix))
    sizes = {o.key: o.size for o in listed}
    keys = [o.key for o in listed if not o.key.endswith("/")]
    if not keys:
        raise DataError(
            f"imagefolder source {location} has no objects: check the bucket and prefix "
            "(one sub-folder per class)"
        )
    rels = [k[len(prefix) :].split("/") for k in keys]
    visible = [
        (k, parts) for k, parts in zip(keys, rels, strict=True) if not any(map(is_hidden, parts))
    ]
    top = {parts[0] for _, parts in visible if len(parts) >= 2}
    split = _split_layout(top)
    depth = 3 if split else 2
    items: list[Item] = []
    for key, parts in visible:
        if len(parts) < depth:
            continue  # files beside the class folders (README, LICENSE) are not samples
        is_test = split and parts[0] == "test"
        cls, inner = (parts[1], parts[2:]) if split else (parts[0], parts[1:])
        _check_ext(f"s3://{root.bucket}/{key}", location)
        rel = ("/".join(inner[:-1]), inner[-1])
        items.append(Item(f"s3://{root.bucket}/{key}", cls, is_test, rel, sizes[key]))
    items.sort(key=lambda it: (it.test, it.class_name, it.relpath))
    return items


def drop_empty(items: list[Item], location: str, skip: bool) -> tuple[list[Item], list[str]]:
    """0-byte files (an interrupted copy) are refused in one line, or skipped with skip_corrupt."""
    empty = [it.name for it in items if it.size == 0]
    if empty and not skip:
        raise DataError(
            f"imagefolder {location}: {empty[0]} is empty (0 bytes; {len(empty)} such file(s)), "
            "e.g. an interrupted copy: copy it again or delete it, or pass skip_corrupt=true"
        )
    return [it for it in items if it.size != 0], empty


def refuse_undecodable(item: Item, info: str, location: str) -> DataError:
    """The one-line error for an image that could not be used."""
    if info.startswith(TOO_LARGE):
        return DataError(
            f"imagefolder {location}: {item.name} is {info[len(TOO_LARGE) :]}; downscale it or "
            f"move it out of the folder, or raise {MAX_PIXELS_ENV}"
        )
    return DataError(
        f"imagefolder {location}: {item.name} is corrupt or unreadable ({info}); "
        "replace or delete it, or pass skip_corrupt=true to skip such files"
    )


def read_sources(items: list[Item], location: str) -> list[str | bytes]:
    """What the decoder reads: local paths, or the objects' bytes fetched in
    ``storage.POOL_CONNECTIONS`` threads (one connection each)."""
    if not location.startswith("s3://"):
        return [it.name for it in items]

    def get(item: Item) -> bytes:
        return storage.get_bytes(storage.parse_s3_uri(item.name))

    with ThreadPoolExecutor(max_workers=storage.POOL_CONNECTIONS) as pool:
        return list(pool.map(get, items))


def select_items(
    items: list[Item], classes: tuple[str, ...] | None, location: str
) -> tuple[list[Item], list[str], list[dict]]:
    """Keep the selected classes (before any decoding); the class names in label order."""
    names = sorted({it.class_name for it in items})
    conversions: list[dict] = []
    if classes is not None:
        where = f"imagefolder {location}"
        picked = [names[i] for i in resolve_classes(classes, names, where=where)]
        conversions.append(
            {
                "op": "select_classes",
                "classes": picked,
                "source_indices": [names.index(c) for c in picked],
            }
        )
        items = [it for it in items if it.class_name in picked]
        names = picked
    if len(names) < 2:
        raise DataError(
            f"imagefolder {location} has a single class ({names[0]}); classification needs at "
            "least two class folders: add one or select more classes"
        )
    return items, names, conversions


Decoded = tuple[Item, np.ndarray, str]  # item, C×H×W array, the file's PIL mode


def _decode_items(
    items: list[Item], location: str, skip_corrupt: bool, **decode: object
) -> tuple[list[Decoded], list[str]]:
    """Decode every item; a corrupt file fails the load unless ``skip_corrupt`` (then counted)."""
    items, bad = drop_empty(items, location, skip_corrupt)
    results = decode_all(read_sources(items, location), **decode)  # type: ignore[arg-type]
    keep: list[Decoded] = []
    for item, (arr, info) in zip(items, results, strict=True):
        if arr is not None:
            keep.append((item, arr, info))
        elif skip_corrupt and not info.startswith(TOO_LARGE):
            bad.append(item.name)
        else:
            raise refuse_undecodable(item, info, location)
    if bad:
        log.warning(
            "imagefolder %s: skipped %d corrupt image(s), first: %s", location, len(bad), bad[0]
        )
    if not keep:
        raise DataError(f"imagefolder {location}: no decodable images; check the files")
    return keep, bad


def _stack(keep: list[Decoded], location: str, channels: int | None) -> np.ndarray:
    """One N×C×H×W array; differing sizes are refused with the fix (``size=``)."""
    shapes = Counter(arr.shape[1:] for _, arr, _ in keep)
    if len(shapes) > 1:
        (common, _), (other, _) = shapes.most_common(2)
        odd = next(it.name for it, arr, _ in keep if arr.shape[1:] == other)
        raise stack_error(location, (0, *common), (0, *other), odd)
    images = np.stack([arr for _, arr, _ in keep])
    if channels is None and all(mode in GRAY_MODES for _, _, mode in keep):
        images = np.ascontiguousarray(images[:, :1])  # gray decoded as RGB has R = G = B
    return images


def stack_error(location: str, common: tuple, other: tuple, odd: str) -> DataError:
    """Images of different sizes without ``size=``: one line naming a file and the fix."""
    return DataError(
        f"imagefolder {location}: images differ in size ({common[1]}x{common[2]} and "
        f"{other[1]}x{other[2]}, e.g. {odd}); add ?size=HxW to the spec to resize them"
    )


def conversion_records(
    modes: Counter, channels_out: int, channels: int | None, size: tuple | None, crop: str | None
) -> list[dict]:
    """Provenance records of the conversions decoding applied."""
    out: list[dict] = []
    if channels is not None or any(m not in ("RGB", "L") for m in modes):
        out.append(
            {
                "op": "decode",
                "modes": dict(modes),
                "to_channels": int(channels_out),
                "method": "PIL convert",
            }
        )
    if crop is not None:
        out.append(crop_record(crop))
    if size is not None:
        out.append(
            {"op": "resize", "to": list(size), "method": "box when shrinking, else bilinear"}
        )
    return out


def load_imagefolder(
    location: str,
    *,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    crop: str | None = None,
    classes: tuple[str, ...] | None = None,
    skip_corrupt: bool = False,
    workers: int | None = None,
    follow_symlinks: bool = False,
) -> ImageDataset:
    """Read an ImageFolder tree; class selection happens before decoding, conversions during."""
    if location.startswith("s3://"):
        items = list_s3(location)
    else:
        items = list_local(location, follow_symlinks=follow_symlinks)
    if not items:
        raise DataError(
            f"imagefolder {location} has no class sub-folders with images: put images in "
            f"{location}/<class>/ (one folder per class)"
        )
    items, names, conversions = select_items(items, classes, location)
    keep, bad = _decode_items(
        items, location, skip_corrupt, channels=channels, size=size, crop=crop, workers=workers
    )
    images = _stack(keep, location, channels)
    modes = Counter(mode for _, _, mode in keep)
    conversions += conversion_records(modes, images.shape[1], channels, size, crop)
    index = {c: i for i, c in enumerate(names)}
    predefined = np.array([it.test for it, _, _ in keep])
    prov = {
        "origin": "imagefolder",
        "files": len(items),
        "modes": dict(modes),
        "skipped_corrupt": len(bad),
        "skipped_files": bad[:20],
        "conversions": conversions,
    }
    return ImageDataset(
        images=images,
        labels=np.array([index[it.class_name] for it, _, _ in keep], dtype=np.int64),
        classes=names,
        provenance=prov,
        predefined_test=predefined if predefined.any() else None,
        name=display_name(location),
    )


def display_name(location: str) -> str:
    base = posixpath.basename(location.rstrip("/").replace(os.sep, "/"))
    return base or location
