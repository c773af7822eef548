"""Content-addressed dataset storage: ``s3://<bucket>/datasets/<sha256>/``.

Layout: ``shards/00000.npy`` … (fixed-size uint8 shards of the N×C×H×W images, see
``warmstart.data.shards``), ``labels.npy``, optional ``predefined_test.npy`` and
``manifest.json``. The manifest is written last and is what makes a dataset visible, so a reader
never sees a half-written one; every object's sha256 is in it and is checked on read, and a
dataset read whole is checked against its content hash too. Arrays are ``.npy`` loaded with
``allow_pickle=False``: reading never unpickles. Datasets stored before sharding (one
``images.npy``) are still read.
"""

from __future__ import annotations

import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from warmstart import __version__, safepath, storage
from warmstart.data.dataset import HASH_FORMAT, ImageDataset, content_hash
from warmstart.data.shards import (
    ShardCache,
    ShardedImages,
    ShardIndex,
    env_int,
    fetch_shard,
    parse_npy,
    sha256,
)
from warmstart.data.writer import MANIFEST, Part, memory_parts, publish, side_files
from warmstart.errors import DataError

log = logging.getLogger(__name__)
PREFIX = "datasets"
STORAGE_FORMAT = 2  # 1: one images.npy; 2: shards
IN_MEMORY_ENV = "WARMSTART_IN_MEMORY_BYTES"
IN_MEMORY_BYTES = 512 * 2**20  # open_dataset holds images up to this size in memory
READ_THREADS = 4
_HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class DatasetRef:
    """Where a stored dataset lives and what it is; ``manifest`` is JSON-able for MLflow."""

    hash: str
    uri: str
    name: str
    num_classes: int
    channels: int
    size: tuple[int, int]
    count: int
    uploaded: bool  # False when the same content was already stored
    manifest: dict = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_manifest(cls, manifest: dict, *, uri: str, uploaded: bool) -> DatasetRef:
        return cls(
            hash=manifest["hash"],
            uri=uri,
            name=manifest["name"],
            num_classes=len(manifest["classes"]),
            channels=int(manifest["shape"][1]),
            size=(int(manifest["shape"][2]), int(manifest["shape"][3])),
            count=int(manifest["shape"][0]),
            uploaded=uploaded,
            manifest=manifest,
        )


def dataset_uri(digest: str, *, bucket: str | None = None) -> storage.S3Uri:
    return storage.uri(PREFIX, digest, bucket=bucket)


def build_manifest(
    meta: dict, digest: str, *, classes: list[str], labels: np.ndarray, test: np.ndarray | None
) -> dict:
    """The manifest (without its ``files``/``shards``, which publishing fills in)."""
    prov = meta.get("provenance") or {}
    counts = np.bincount(labels, minlength=len(classes))
    return {
        "format": HASH_FORMAT,
        "storage": STORAGE_FORMAT,
        "hash": digest,
        "name": meta.get("name", "dataset"),
        "source": prov.get("spec"),
        "classes": list(classes),
        "counts": {c: int(k) for c, k in zip(classes, counts, strict=True)},
        "shape": [int(v) for v in meta["shape"]],
        "dtype": "uint8",
        "layout": "NCHW",
        "predefined_test": None if test is None else int(test.sum()),
        "provenance": prov,
        "warmstart_version": __version__,
    }


def existing(digest: str, bucket: str | None = None) -> DatasetRef | None:
    """The stored dataset with this hash, or None."""
    root = dataset_uri(digest, bucket=bucket)
    if not storage.exists(root.child(MANIFEST)):
        return None
    manifest = json.loads(storage.get_bytes(root.child(MANIFEST)))
    log.info("dataset %s already stored at %s: nothing uploaded", digest[:12], root)
    return DatasetRef.from_manifest(manifest, uri=f"{root}/", uploaded=False)


def store_parts(
    digest: str, shards: list[Part], meta: dict, labels, test, *, bucket: str | None = None
) -> DatasetRef:
    """Publish shards + labels (+ test mask) under the content hash; the manifest goes last."""
    found = existing(digest, bucket)
    if found is not None:
        return found
    root = dataset_uri(digest, bucket=bucket)
    classes = meta["classes"]
    manifest = build_manifest(meta, digest, classes=classes, labels=labels, test=test)
    manifest = publish(root, shards, side_files(labels, test), manifest)
    return DatasetRef.from_manifest(manifest, uri=f"{root}/", uploaded=True)


def store_dataset(ds: ImageDataset, *, bucket: str | None = None) -> DatasetRef:
    """Upload once per content hash; the same content again uploads nothing (``uploaded=False``).
    An interrupted upload leaves no manifest (invisible); storing again resumes it."""
    digest = ds.content_hash()
    found = existing(digest, bucket)
    if found is not None:
        return found
    meta = {"name": ds.name, "provenance": ds.provenance, "shape": ds.shape, "classes": ds.classes}
    shards = memory_parts(np.asarray(ds.images))
    return store_parts(digest, shards, meta, ds.labels, ds.predefined_test, bucket=bucket)


def _resolve(ref_or_hash: DatasetRef | str, bucket: str | None) -> tuple[str, storage.S3Uri]:
    if isinstance(ref_or_hash, DatasetRef):
        uri = storage.parse_s3_uri(ref_or_hash.uri.rstrip("/"))
        return ref_or_hash.hash, uri
    text = str(ref_or_hash).strip()
    if text.startswith("s3://"):
        uri = storage.parse_s3_uri(text.rstrip("/"))
        return uri.key.rsplit("/", 1)[-1], uri
    if not _HASH.match(text):
        raise DataError(
            f"{text!r} is not a dataset hash: give the 64-hex sha256 from store_dataset or a DatasetRef"
        )
    return text, dataset_uri(text, bucket=bucket)


def read_manifest(ref_or_hash: DatasetRef | str, *, bucket: str | None = None) -> dict:
    digest, root = _resolve(ref_or_hash, bucket)
    manifest_uri = root.child(MANIFEST)
    if not storage.exists(manifest_uri):
        raise DataError(
            f"dataset {digest} is not stored at {root}/ (no {MANIFEST}): ingest it first with "
            "store_dataset, or check the bucket"
        )
    try:
        return json.loads(storage.get_bytes(manifest_uri))
    except json.JSONDecodeError:
        raise DataError(
            f"{manifest_uri} is not valid JSON: the manifest was tampered with; re-ingest"
        ) from None


def _read_files(root: storage.S3Uri, manifest: dict) -> dict[str, np.ndarray]:
    """The manifest's side files (labels, test mask; ``images.npy`` of the old layout), verified."""
    arrays: dict[str, np.ndarray] = {}
    for name, info in manifest.get("files", {}).items():
        obj = root.child(safepath.file_name(name, "file", str(root.child(MANIFEST))))
        if storage.head(obj) is None:
            raise DataError(
                f"{obj} is missing from the store: the dataset was partly deleted; delete "
                f"{root}/ and re-ingest the source"
            )
        data = storage.get_bytes(obj)
        if sha256(data) != info.get("sha256"):
            raise DataError(
                f"{obj} does not match its sha256 in the manifest: the stored dataset was "
                "altered; delete the prefix and re-ingest the source"
            )
        arrays[name] = parse_npy(data, str(obj))
    if "labels.npy" not in arrays or ("images.npy" not in arrays and "shards" not in manifest):
        raise DataError(f"{root.child(MANIFEST)} lists no images/labels: re-ingest the source")
    return arrays


def _read_shards(index: ShardIndex) -> np.ndarray:
    """Every shard into one preallocated array, fetched in threads, each verified."""
    images = np.empty(index.shape, dtype=np.uint8)
    cache = ShardCache()

    def one(i: int) -> None:
        start, stop = index.span(i)
        images[start:stop] = fetch_shard(index, i, cache)

    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        list(pool.map(one, range(len(index.keys))))
    return images


def _dataset(manifest: dict, digest: str, arrays: dict, images, known: str | None) -> ImageDataset:
    return ImageDataset(
        images=images,
        labels=arrays["labels.npy"],
        classes=manifest["classes"],
        provenance=manifest.get("provenance", {}),
        predefined_test=arrays.get("predefined_test.npy"),
        name=manifest.get("name", digest[:12]),
        known_hash=known,
    )


def load_dataset(ref_or_hash: DatasetRef | str, *, bucket: str | None = None) -> ImageDataset:
    """Read a stored dataset whole into memory, verifying each object's sha256 and the content
    hash. For datasets too large for memory use ``open_dataset``."""
    digest, root = _resolve(ref_or_hash, bucket)
    manifest = read_manifest(ref_or_hash, bucket=bucket)
    arrays = _read_files(root, manifest)
    if "shards" in manifest:
        images = _read_shards(ShardIndex.from_manifest(str(root), manifest))
    else:
        images = arrays.pop("images.npy")
    test = arrays.get("predefined_test.npy")
    actual = content_hash(images, arrays["labels.npy"], manifest["classes"], test)
    if actual != digest or manifest.get("hash") != digest:
        raise DataError(
            f"dataset at {root}/ hashes to {actual[:12]}…, not {digest[:12]}…: "
            f"{root.child(MANIFEST)} or its objects were altered; delete the prefix and re-ingest"
        )
    return _dataset(manifest, digest, arrays, images, None)


def in_memory_limit() -> int:
    """Bytes of images ``open_dataset`` still loads whole (``WARMSTART_IN_MEMORY_BYTES``)."""
    return env_int(IN_MEMORY_ENV, IN_MEMORY_BYTES, "5e8")


def open_dataset(
    ref_or_hash: DatasetRef | str, *, bucket: str | None = None, limit: int | None = None
) -> ImageDataset:
    """A stored dataset, whole in memory up to ``limit`` bytes of images (default
    ``in_memory_limit()``); above it, images are read from the shards on demand (each shard
    verified by its sha256) and the dataset carries the manifest's verified hash."""
    digest, root = _resolve(ref_or_hash, bucket)
    manifest = read_manifest(ref_or_hash, bucket=bucket)
    limit = in_memory_limit() if limit is None else limit
    if "shards" not in manifest or int(np.prod(manifest["shape"])) <= limit:
        return load_dataset(ref_or_hash, bucket=bucket)
    if manifest.get("hash") != digest:
        raise DataError(
            f"{root.child(MANIFEST)} names dataset {str(manifest.get('hash'))[:12]}…, not "
            f"{digest[:12]}…: the manifest was altered; delete the prefix and re-ingest"
        )
    arrays = _read_files(root, manifest)
    images = ShardedImages(ShardIndex.from_manifest(str(root), manifest), ShardCache())
    return _dataset(manifest, digest, arrays, images, digest)
