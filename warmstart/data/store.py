"""Content-addressed dataset storage: ``s3://<bucket>/datasets/<sha256>/``.

Layout: ``images.npy``, ``labels.npy``, optional ``predefined_test.npy`` and ``manifest.json``.
The manifest is written last and is what makes a dataset visible, so a reader never sees a
half-written one; its per-object sha256 and the recomputed content hash are checked on read.
Arrays are ``.npy`` loaded with ``allow_pickle=False``: reading never unpickles.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass, field

import numpy as np

from warmstart import __version__, storage
from warmstart.data.dataset import HASH_FORMAT, ImageDataset, content_hash
from warmstart.errors import DataError, StorageError

log = logging.getLogger(__name__)
PREFIX = "datasets"
MANIFEST = "manifest.json"
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


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dataset_uri(digest: str, *, bucket: str | None = None) -> storage.S3Uri:
    return storage.uri(PREFIX, digest, bucket=bucket)


def build_manifest(ds: ImageDataset, digest: str, files: dict[str, bytes]) -> dict:
    prov = ds.provenance or {}
    return {
        "format": HASH_FORMAT,
        "hash": digest,
        "name": ds.name,
        "source": prov.get("spec"),
        "classes": ds.classes,
        "counts": ds.counts(),
        "shape": list(ds.images.shape),
        "dtype": "uint8",
        "layout": "NCHW",
        "predefined_test": None if ds.predefined_test is None else int(ds.predefined_test.sum()),
        "files": {name: {"sha256": _sha(data), "bytes": len(data)} for name, data in files.items()},
        "provenance": prov,
        "warmstart_version": __version__,
    }


def store_dataset(ds: ImageDataset, *, bucket: str | None = None) -> DatasetRef:
    """Upload once per content hash; the same content again uploads nothing (``uploaded=False``)."""
    digest = ds.content_hash()
    root = dataset_uri(digest, bucket=bucket)
    manifest_uri = root.child(MANIFEST)
    if storage.exists(manifest_uri):
        manifest = json.loads(storage.get_bytes(manifest_uri))
        log.info("dataset %s already stored at %s: nothing uploaded", digest[:12], root)
        return DatasetRef.from_manifest(manifest, uri=f"{root}/", uploaded=False)
    files = {"images.npy": _npy(ds.images), "labels.npy": _npy(ds.labels)}
    if ds.predefined_test is not None:
        files["predefined_test.npy"] = _npy(ds.predefined_test)
    manifest = build_manifest(ds, digest, files)
    try:
        for name, data in files.items():
            storage.put_bytes(root.child(name), data)
        storage.put_bytes(
            manifest_uri,
            json.dumps(manifest, indent=1, sort_keys=True).encode(),
            content_type="application/json",
        )
    except BaseException:
        _cleanup(root, manifest_uri)
        raise
    return DatasetRef.from_manifest(manifest, uri=f"{root}/", uploaded=True)


def _cleanup(root: storage.S3Uri, manifest_uri: storage.S3Uri) -> None:
    """Remove a failed upload's objects (best effort) unless another writer finished it."""
    try:
        if not storage.exists(manifest_uri):
            storage.delete_prefix(storage.S3Uri(root.bucket, root.key + "/"))
    except StorageError:
        log.warning("could not clean up the partial upload under %s", root)


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


def load_dataset(ref_or_hash: DatasetRef | str, *, bucket: str | None = None) -> ImageDataset:
    """Read a stored dataset back, verifying each object's sha256 and the content hash."""
    digest, root = _resolve(ref_or_hash, bucket)
    manifest = read_manifest(ref_or_hash, bucket=bucket)
    arrays: dict[str, np.ndarray] = {}
    for name, info in manifest.get("files", {}).items():
        obj = root.child(name)
        data = storage.get_bytes(obj)
        if _sha(data) != info.get("sha256"):
            raise DataError(
                f"{obj} does not match its sha256 in the manifest: the stored dataset was "
                "altered; delete the prefix and re-ingest the source"
            )
        try:
            arrays[name] = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise DataError(
                f"{obj} is not a plain .npy array ({exc}); re-ingest the source"
            ) from None
    if "images.npy" not in arrays or "labels.npy" not in arrays:
        raise DataError(f"{root.child(MANIFEST)} lists no images/labels: re-ingest the source")
    test = arrays.get("predefined_test.npy")
    actual = content_hash(arrays["images.npy"], arrays["labels.npy"], manifest["classes"], test)
    if actual != digest or manifest.get("hash") != digest:
        raise DataError(
            f"dataset at {root}/ hashes to {actual[:12]}…, not {digest[:12]}…: "
            f"{root.child(MANIFEST)} or its objects were altered; delete the prefix and re-ingest"
        )
    return ImageDataset(
        images=arrays["images.npy"],
        labels=arrays["labels.npy"],
        classes=manifest["classes"],
        provenance=manifest.get("provenance", {}),
        predefined_test=test,
        name=manifest.get("name", digest[:12]),
    )
