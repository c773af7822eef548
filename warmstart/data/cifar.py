"""CIFAR-10 in the official python format: ``cifar-10-python.tar.gz`` or its extracted folder,
local or under ``s3://``. Pickles are untrusted and go through the restricted unpickler."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import numpy as np

from warmstart import storage
from warmstart.data.dataset import ImageDataset
from warmstart.data.safety import read_tar, restricted_loads
from warmstart.errors import DataError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
FILES = (*TRAIN_BATCHES, TEST_BATCH, META)
FOLDER = "cifar-10-batches-py"


def load_cifar10(location: str) -> ImageDataset:
    """All 5 training batches then the test batch; ``predefined_test`` marks the test batch."""
    files = _fetch_s3(location) if location.startswith("s3://") else _fetch_local(location)
    return parse_cifar10(files, where=location)


def _by_basename(found: dict[str, bytes], where: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, data in found.items():
        base = PurePosixPath(name).name
        if base in FILES:
            if base in out:
                raise DataError(f"CIFAR-10 source {where} holds {base} twice; keep one copy")
            out[base] = data
    return out


def _fetch_local(location: str) -> dict[str, bytes]:
    path = Path(location).expanduser()
    if not path.exists():
        raise DataError(
            f"CIFAR-10 source {location} does not exist: give the path of cifar-10-python.tar.gz "
            "or of its extracted cifar-10-batches-py folder"
        )
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise DataError(
                f"CIFAR-10 source {location} is a file but not a tar archive: give "
                "cifar-10-python.tar.gz or the extracted folder"
            )
        return _by_basename(read_tar(path, wanted=set(FILES)), location)
    folder = path / FOLDER if (path / FOLDER).is_dir() else path
    if not any((folder / f).is_file() for f in FILES):
        tars = sorted(p for p in path.glob("*.tar.gz") if not p.name.startswith("."))
        if len(tars) == 1:
            return _by_basename(read_tar(tars[0], wanted=set(FILES)), str(tars[0]))
    return {f: (folder / f).read_bytes() for f in FILES if (folder / f).is_file()}


def _fetch_s3(location: str) -> dict[str, bytes]:
    root = storage.parse_s3_uri(location)
    if root.key and not root.key.endswith("/") and storage.exists(root):
        return _s3_tar(root, location)
    prefix = storage.S3Uri(root.bucket, root.key.rstrip("/") + "/" if root.key else "")
    keys = list(storage.list_keys(prefix))
    if not keys:
        raise DataError(
            f"CIFAR-10 source {location} has no objects: check the bucket and prefix, or upload "
            "the batches (data_batch_1..5, test_batch, batches.meta) there"
        )
    picked = [k for k in keys if PurePosixPath(k).name in FILES]
    if not picked:
        tars = [k for k in keys if k.endswith((".tar.gz", ".tgz", ".tar"))]
        if len(tars) == 1:
            return _s3_tar(storage.S3Uri(root.bucket, tars[0]), location)
    found = {k: storage.get_bytes(storage.S3Uri(root.bucket, k)) for k in picked}
    return _by_basename(found, location)


def _s3_tar(obj: storage.S3Uri, location: str) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory(prefix="warmstart-cifar-") as tmp:
        local = Path(tmp) / "archive.tar.gz"
        storage.download_file(obj, local)
        if not tarfile.is_tarfile(local):
            raise DataError(
                f"CIFAR-10 source {obj} is not a tar archive: give cifar-10-python.tar.gz"
            )
        return _by_basename(read_tar(local, wanted=set(FILES), name=str(obj)), location)


def _str_keys(obj: object, where: str) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise DataError(
            f"{where} holds a {type(obj).__name__}, not a dict; use the official CIFAR-10 batches"
        )
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def parse_cifar10(files: dict[str, bytes], *, where: str) -> ImageDataset:
    """Validate and assemble the batches (bytes by basename) into one ImageDataset."""
    missing = [f for f in FILES if f not in files]
    if missing:
        raise DataError(
            f"CIFAR-10 source {where} lacks {', '.join(missing)}: give the complete "
            "cifar-10-python.tar.gz or its extracted folder"
        )
    meta = _str_keys(restricted_loads(files[META], where=f"{where}/{META}"), f"{where}/{META}")
    names = meta.get("label_names")
    if not isinstance(names, list) or not names:
        raise DataError(f"{where}/{META} has no label_names list; use the official batches.meta")
    classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
    images, labels, test = [], [], []
    for batch in (*TRAIN_BATCHES, TEST_BATCH):
        data, lab = _parse_batch(files[batch], f"{where}/{batch}", len(classes))
        images.append(data)
        labels.append(lab)
        test.append(np.full(len(lab), batch == TEST_BATCH))
    return ImageDataset(
        images=np.concatenate(images).reshape(-1, 3, 32, 32),
        labels=np.concatenate(labels),
        classes=classes,
        provenance={"origin": "CIFAR-10 python format", "batches": list(FILES[:-1])},
        predefined_test=np.concatenate(test),
        name="cifar10",
    )


def _parse_batch(raw: bytes, where: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    entry = _str_keys(restricted_loads(raw, where=where), where)
    data, labels = entry.get("data"), entry.get("labels")
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
    ):
        shape = getattr(data, "shape", None)
        raise DataError(
            f"{where}: 'data' must be a uint8 array of shape (N, 3072), got "
            f"{type(data).__name__} {getattr(data, 'dtype', '')} {shape}; use the official batches"
        )
    if not isinstance(labels, list | np.ndarray) or len(labels) != len(data):
        count = len(labels) if isinstance(labels, list | np.ndarray) else "no"
        raise DataError(
            f"{where}: {count} labels for {len(data)} images; the batch is inconsistent, "
            "re-extract it from the official archive"
        )
    try:
        lab = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: labels are not integers; use the official batches") from None
    if lab.ndim != 1 or (len(lab) and (lab.min() < 0 or lab.max() >= num_classes)):
        raise DataError(
            f"{where}: labels outside 0..{num_classes - 1} (batches.meta lists {num_classes} "
            "classes); the batch is inconsistent, re-extract it"
        )
    return data, lab
