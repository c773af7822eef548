"""Training work in S3, keyed by what it was computed from: ``checkpoints/<run-key>/``.

A run key hashes the stage's real inputs (dataset and split hashes, the resolved config, the code
version), never pickled Python objects. A finished stage has ``result.json`` (written last, so a
reader never sees half a result); an unfinished one has epoch checkpoints to resume from.

S3 is the truth; the local folder is only a cache of it. The cache is keyed by endpoint and
bucket (``<state>/cache/checkpoints/<endpoint-id>/<bucket>/<run-key>/``) and checked against the
store on every ``pull``: a local file whose object is gone, or whose size or content differs
(MD5 ETag, or the sha256 recorded at upload), is dropped and, if the object exists, downloaded
again. So another bucket trains again, a deleted prefix forces a retrain, a corrupt local copy is
replaced, and epoch checkpoints always land in the bucket in use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
from functools import cache
from pathlib import Path

from warmstart import safepath, storage
from warmstart.errors import StorageError
from warmstart.settings import state_dir

PREFIX = "checkpoints"
RESULT = "result.json"
PARTIAL = (".part", ".tmp")  # files being written: never uploaded, never trusted


@cache
def code_version() -> str:
    """Hash of the training code (models/ sources): a change there invalidates cached stages."""
    spec = importlib.util.find_spec("warmstart.models")  # locate without importing torch
    if spec is None or not spec.submodule_search_locations:
        raise StorageError("warmstart.models is not installed: run `make install`")
    root = Path(next(iter(spec.submodule_search_locations)))
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def run_key(kind: str, inputs: dict) -> str:
    payload = json.dumps(
        {"kind": kind, "code": code_version(), **inputs}, sort_keys=True, default=str
    )
    return f"{kind}-{hashlib.sha256(payload.encode()).hexdigest()[:20]}"


def store_id(endpoint: str | None) -> str:
    """A folder name for one S3 endpoint: readable host part plus a hash of the full URL."""
    url = endpoint or "aws"
    host = re.sub(r"^[a-z0-9+.-]+://", "", url.lower()).split("/")[0]
    slug = re.sub(r"[^a-z0-9.-]+", "_", host).strip("_") or "s3"
    return f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def cache_dir(bucket: str, key: str) -> Path:
    """The local cache folder of one stage, keyed by endpoint, bucket and run key."""
    return state_dir() / "cache" / PREFIX / store_id(storage.endpoint()) / bucket / key


def matches(path: Path, info: storage.ObjectInfo, target: storage.S3Uri) -> bool:
    """True when the local file holds exactly the object's content: same size, and the same MD5
    (single-part ETag) or else the same sha256 (recorded at upload; one HEAD). An ETag that is no
    MD5 (multipart, SSE-KMS) falls through to the sha256; unverifiable counts as no."""
    if not path.is_file() or path.stat().st_size != info.size:
        return False
    if info.md5 is not None and storage.file_digest(path, "md5") == info.md5:
        return True
    recorded = info.sha256 or getattr(storage.head(target), "sha256", None)
    return recorded is not None and storage.file_digest(path) == recorded


class RunStore:
    """A stage's ``s3://<bucket>/checkpoints/<key>/`` and its verified local cache."""

    def __init__(self, key: str, *, bucket: str | None = None):
        self.key = key
        self.prefix = storage.uri(PREFIX, key, bucket=bucket)
        self.local = cache_dir(self.prefix.bucket, key)
        self._pushed: dict[str, str] | None = None  # checkpoint files uploaded: rel -> md5

    @property
    def uri(self) -> str:
        return str(self.prefix)

    def _object(self, rel: str) -> storage.S3Uri:
        return self.prefix.child(rel)

    def _remote(self) -> dict[str, storage.ObjectInfo]:
        """The stage's objects by path relative to the prefix."""
        start = len(self.prefix.key) + 1
        objects = storage.list_objects(self.prefix.child(""))
        return {o.key[start:]: o for o in objects if not o.key.endswith("/")}  # no dir markers

    def finished(self) -> dict | None:
        """The stored result if this stage already completed, else None."""
        target = self.prefix.child(RESULT)
        if not storage.exists(target):
            return None
        return json.loads(storage.get_bytes(target))

    def pull(self) -> Path:
        """Make the local cache equal to what S3 holds now and return its folder: local files
        whose object is gone or differs are dropped, missing or dropped ones are downloaded."""
        self.local.mkdir(parents=True, exist_ok=True)
        remote = self._remote()
        for path in [p for p in self.local.rglob("*") if p.is_file()]:
            rel = path.relative_to(self.local).as_posix()
            info = remote.get(rel)
            if info is None or not matches(path, info, self._object(rel)):
                path.unlink()
        for rel, info in remote.items():
            where = f"the objects under {self.prefix}/"
            rel = safepath.relative_key(rel, "object key", where)
            dest = safepath.inside(self.local, rel, what="object key", where=where)
            if not dest.exists():
                self._download(rel, info, dest)
        return self.local

    def _download(self, rel: str, info: storage.ObjectInfo, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        storage.download_file(self._object(rel), tmp)
        if not matches(tmp, info, self._object(rel)):
            tmp.unlink(missing_ok=True)
            raise StorageError(
                f"{self._object(rel)} changed or arrived corrupt while downloading to {dest}: "
                "rerun; if it persists, delete the stage's prefix to retrain"
            )
        tmp.replace(dest)

    def push(self, path: Path) -> str:
        """Upload one file of the local cache to the same relative path in S3."""
        rel = path.relative_to(self.local).as_posix()
        target = self._object(rel)
        storage.put_file(target, path)
        return str(target)

    def push_checkpoint_dir(self, ckpt_dir: Path, files_from: Path | None = None) -> None:
        """Upload the checkpoint files that S3 lacks or holds differently (meta.json last).
        S3 is listed once per stage and process; later epochs compare with what this store
        uploaded (one LIST fewer per epoch: the stage's prefix has one writer, its trainer).
        ``files_from``: a snapshot of ``ckpt_dir`` (same layout) to read the files from."""
        source = files_from or ckpt_dir
        files = sorted(p for p in source.rglob("*") if p.is_file() and not p.name.endswith(PARTIAL))
        if self._pushed is None:  # the first epoch of this process: what S3 holds now
            self._pushed = {}
            for rel, info in self._remote().items():
                path = self.local / rel
                if path.is_file() and matches(path, info, self._object(rel)):
                    self._pushed[rel] = storage.file_digest(path, "md5")
        for path in [p for p in files if p.suffix != ".json"] + [
            p for p in files if p.suffix == ".json"
        ]:
            rel = (ckpt_dir / path.relative_to(source)).relative_to(self.local).as_posix()
            digest = storage.file_digest(path, "md5")
            if self._pushed.get(rel) != digest:
                storage.put_file(self._object(rel), path)
                self._pushed[rel] = digest

    def finish(self, result: dict) -> dict:
        """Write result.json last: the stage counts as done only once it exists."""
        storage.put_bytes(
            self.prefix.child(RESULT),
            json.dumps(result, indent=2, sort_keys=True).encode(),
            content_type="application/json",
        )
        return result

    def clear_local(self) -> None:
        shutil.rmtree(self.local, ignore_errors=True)
