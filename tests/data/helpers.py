"""Tiny on-disk fixtures in the exact formats the ecosystem reads (CIFAR python batches,
ImageFolder trees), generated with numpy + pickle + PIL; nothing is downloaded."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_cifar(
    root: Path, *, per_batch: int = 10, seed: int = 0, bytes_keys: bool = False
) -> Path:
    """Write ``root/cifar-10-batches-py/`` with 5 train batches, a test batch and batches.meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def key(k: str) -> str | bytes:
        return k.encode() if bytes_keys else k

    for name in BATCHES:
        entry = {
            key("batch_label"): f"{name} of 5",
            key("labels"): [int(x) for x in rng.integers(0, 10, per_batch)],
            key("data"): rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            key("filenames"): [f"img_{i}.png" for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {
        key("num_cases_per_batch"): per_batch,
        key("label_names"): CIFAR_CLASSES,
        key("num_vis"): 3072,
    }
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def gzip_with_flipped_pixel(tar_bytes: bytes) -> bytes:
    """The tar gzipped with stored (level 0) deflate blocks and one byte of data_batch_2's pixels
    flipped: it decompresses without error, and only gzip's CRC-32 at the end can tell."""
    import gzip

    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("data_batch_2"))
    start = member.offset_data + member.size // 2
    packed = bytearray(gzip.compress(tar_bytes, compresslevel=0))
    at = bytes(packed).index(tar_bytes[start : start + 64]) + 10
    packed[at] ^= 0xFF
    return bytes(packed)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def png_bytes(arr: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    img = Image.fromarray(arr)
    if mode:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def write_image(
    path: Path, rng: np.random.Generator, *, size=(12, 10), mode="RGB", fmt="PNG"
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    img = Image.fromarray(arr).convert(mode)
    img.save(path, format=fmt)


def write_tree(
    root: Path, classes=("cat", "dog", "emu"), per_class: int = 3, seed: int = 0, **kw
) -> Path:
    rng = np.random.default_rng(seed)
    for c in classes:
        for i in range(per_class):
            write_image(root / c / f"{i:02d}.png", rng, **kw)
    return root
