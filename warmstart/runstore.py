"""Training work in S3, keyed by what it was computed from: ``checkpoints/<run-key>/``.

A run key hashes the stage's real inputs (dataset and split hashes, the resolved config, the code
version), never pickled Python objects. A finished stage has ``result.json`` (written last, so a
reader never sees half a result); an unfinished one has epoch checkpoints to resume from.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from functools import cache
from pathlib import Path

from warmstart import storage
from warmstart.settings import state_dir


@cache
def code_version() -> str:
    """Hash of the training code (models/ sources): a change there invalidates cached stages."""
    from warmstart import models

    root = Path(models.__file__).parent
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


class RunStore:
    """Local mirror of ``s3://<bucket>/checkpoints/<key>/`` under the state folder."""

    def __init__(self, key: str):
        self.key = key
        self.prefix = storage.uri("checkpoints", key)
        self.local = state_dir() / "cache" / "checkpoints" / key

    @property
    def uri(self) -> str:
        return str(self.prefix)

    def finished(self) -> dict | None:
        """The stored result if this stage already completed, else None."""
        target = self.prefix.child("result.json")
        if not storage.exists(target):
            return None
        return json.loads(storage.get_bytes(target))

    def pull(self) -> Path:
        """Download whatever is stored (epoch checkpoints, final weights) into the local mirror."""
        self.local.mkdir(parents=True, exist_ok=True)
        for key in storage.list_keys(self.prefix.child("")):
            name = key[len(self.prefix.key) + 1 :]
            dest = self.local / name
            if dest.exists():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".part")
            storage.download_file(storage.S3Uri(self.prefix.bucket, key), tmp)
            tmp.replace(dest)
        return self.local

    def push(self, path: Path) -> str:
        rel = path.relative_to(self.local).as_posix()
        target = self.prefix.child(rel)
        storage.put_file(target, path)
        return str(target)

    def push_checkpoint_dir(self, ckpt_dir: Path) -> None:
        """Upload the checkpoint files written so far (meta.json last)."""
        files = sorted(
            p for p in ckpt_dir.rglob("*") if p.is_file() and not p.name.endswith(".part")
        )
        remote = {k[len(self.prefix.key) + 1 :] for k in storage.list_keys(self.prefix.child(""))}
        metas = [p for p in files if p.suffix == ".json"]
        for p in [p for p in files if p.suffix != ".json"] + metas:
            rel = p.relative_to(self.local).as_posix()
            if p.suffix == ".json" or rel not in remote:
                self.push(p)

    def finish(self, result: dict) -> dict:
        """Write result.json last: the stage counts as done only once it exists."""
        storage.put_bytes(
            self.prefix.child("result.json"),
            json.dumps(result, indent=2, sort_keys=True).encode(),
            content_type="application/json",
        )
        return result

    def clear_local(self) -> None:
        shutil.rmtree(self.local, ignore_errors=True)
