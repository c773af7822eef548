"""Writing a sharded dataset: images stream into local spool shards of fixed row count, then the
content hash is computed over them, the shards are uploaded (one already stored with the right
sha256 is skipped, so an interrupted ingestion resumes) and the manifest is written last.

Memory stays bounded by one shard per upload thread plus the shard being filled, whatever the
dataset's size; the spool needs the dataset's size on local disk until the upload ends, after
which the shards move into the local shard cache (the first training epoch reads them there).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from warmstart import storage
from warmstart.data.dataset import ContentHasher
from warmstart.data.shards import (
    SHARD_DIR,
    ShardCache,
    npy_bytes,
    parse_npy,
    rows_per_shard,
    sha256,
)
from warmstart.errors import DataError, StorageError

log = logging.getLogger(__name__)
UPLOAD_THREADS = 4  # parallel shard PUTs (each holds one shard in memory)
MANIFEST = "manifest.json"


@dataclass
class Part:
    """One object to store: its name under the dataset root and a way to get its bytes."""

    name: str
    read: Callable[[], bytes]
    count: int = 0  # rows, for shards
    spool: Path | None = None  # the local file, moved into the cache once uploaded


class ShardWriter:
    """Collects image batches into spool shards of a fixed row count (bounded memory)."""

    def __init__(self, spool: Path, shard_bytes: int | None = None) -> None:
        self.spool, self.shard_bytes = spool, shard_bytes
        self.files: list[Path] = []
        self.rows = 0
        self.geometry: tuple[int, ...] | None = None
        self._buf: list[np.ndarray] = []
        self._buffered = 0

    def add(self, images: np.ndarray) -> None:
        """Append N×C×H×W uint8 images (every batch must share the first batch's C×H×W)."""
        if self.geometry is None:
            self.geometry = tuple(images.shape[1:])
            per = int(np.prod(self.geometry))
            self.rows = rows_per_shard(per, self.shard_bytes)
        self._buf.append(np.ascontiguousarray(images, dtype=np.uint8))
        self._buffered += len(images)
        while self._buffered >= self.rows:
            self._flush(self.rows)

    def _flush(self, n: int) -> None:
        whole = np.concatenate(self._buf) if len(self._buf) > 1 else self._buf[0]
        path = self.spool / f"{len(self.files):05d}.npy"
        np.save(path, whole[:n], allow_pickle=False)
        self.files.append(path)
        rest = whole[n:]
        self._buf, self._buffered = ([rest] if len(rest) else []), len(rest)

    def close(self, *, first_channel: bool = False) -> None:
        """Write the last partial shard; ``first_channel`` keeps channel 0 only (gray sources
        decoded as RGB), rewriting each spool shard in turn."""
        if self._buffered:
            self._flush(self._buffered)
        if first_channel:
            for path in self.files:
                np.save(path, np.ascontiguousarray(np.load(path)[:, :1]), allow_pickle=False)
            if self.geometry is not None:
                self.geometry = (1, *self.geometry[1:])

    def hash_parts(self, labels: np.ndarray, classes: list[str], test: np.ndarray | None):
        """(content hash, shard parts): one pass over the spool, one shard in memory at a time."""
        if self.geometry is None:
            raise DataError("no images were decoded: nothing to store; check the source")
        hasher = ContentHasher((len(labels), *self.geometry), labels, classes, test)
        parts = []
        for path in self.files:
            array = parse_npy(path.read_bytes(), str(path))
            hasher.update(array)
            parts.append(_file_part(path, len(array)))
        return hasher.hexdigest(), parts


def _file_part(path: Path, count: int) -> Part:
    return Part(f"{SHARD_DIR}/{path.name}", path.read_bytes, count, path)


def memory_parts(images: np.ndarray, shard_bytes: int | None = None) -> list[Part]:
    """Shard parts of an in-memory array (each serialised only when uploaded)."""
    per = int(np.prod(images.shape[1:]))
    rows = rows_per_shard(per, shard_bytes)
    return [
        Part(
            f"{SHARD_DIR}/{i // rows:05d}.npy",
            lambda a=i, b=i + rows: npy_bytes(images[a:b]),
            len(images[i : i + rows]),
        )
        for i in range(0, len(images), rows)
    ]


def spool_dir() -> Path:
    """A fresh spool folder beside the shard cache (same disk: shards move, not copy)."""
    base = ShardCache().root.parent / "spool"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=base, prefix="ingest-"))


def _upload(root: storage.S3Uri, part: Part) -> dict:
    """PUT one part unless the store already holds it with the same sha256 (resume)."""
    data = part.read()
    digest = sha256(data)
    target = root.child(part.name)
    info = storage.head(target)
    if info is None or info.sha256 != digest or info.size != len(data):
        storage.put_bytes(target, data)
        resumed = False
    else:
        resumed = True
    entry = {"key": part.name, "sha256": digest, "bytes": len(data), "resumed": resumed}
    return entry | ({"count": part.count} if part.count else {})


def publish(root: storage.S3Uri, shards: list[Part], files: list[Part], manifest: dict) -> dict:
    """Upload shards and side files in threads, then the manifest (what makes it visible).
    A failure leaves no manifest: the dataset stays invisible and a rerun resumes."""
    try:
        with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
            done = list(pool.map(lambda p: _upload(root, p), [*shards, *files]))
    except StorageError as err:
        raise StorageError(
            f"storing dataset {root}/ was interrupted ({err}); nothing is visible: run the same "
            "command again to resume (shards already stored are kept)"
        ) from None
    resumed = sum(e.pop("resumed") for e in done)
    if resumed:
        log.info("dataset %s: %d object(s) already stored, not uploaded again", root, resumed)
    manifest = dict(manifest)
    manifest["files"] = {
        e["key"]: {"sha256": e["sha256"], "bytes": e["bytes"]} for e in done[len(shards) :]
    }
    rows = shards[0].count if shards else 0
    manifest["shards"] = {"rows": rows, "items": done[: len(shards)]}
    storage.put_bytes(
        root.child(MANIFEST),
        json.dumps(manifest, indent=1, sort_keys=True).encode(),
        content_type="application/json",
    )
    cache = ShardCache()
    for part, entry in zip(shards, done, strict=False):
        if part.spool is not None:
            cache.adopt(entry["sha256"], part.spool)
    return manifest


def side_files(labels: np.ndarray, test: np.ndarray | None) -> list[Part]:
    out = [Part("labels.npy", lambda: npy_bytes(np.asarray(labels, dtype=np.int64)))]
    if test is not None:
        out.append(Part("predefined_test.npy", lambda: npy_bytes(np.asarray(test, dtype=bool))))
    return out


def remove_spool(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
