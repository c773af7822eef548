"""What training stages share: weights and images on local disk beside the stage's S3 prefix
(safetensors, never pickles), the per-epoch callback (background checkpoint uploads) and the
reuse marker."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import safetensors.torch
import torch
from PIL import Image
from safetensors.torch import save_file

from warmstart import storage, timing
from warmstart.contracts import StageRecord
from warmstart.runstore import PARTIAL, RunStore

Report = Callable[[int, dict], None]  # (epoch, metrics) after every epoch of a training stage
T = TypeVar("T")


def no_report(epoch: int, metrics: dict) -> None:
    return None


class EpochUploads:
    """The per-epoch callback of a training stage: report the epoch's metrics and upload its
    checkpoint in the background, so training goes on while the bucket receives it.

    The trainer hands over a snapshot of the checkpoint folder (hard links: ``save_checkpoint``
    writes new files and replaces ``meta.json`` atomically, so the snapshot never changes) and
    goes on; one thread uploads it. Before handing over the next one it waits for the previous
    upload, so the bucket is never more than one epoch behind (resume after kill -9 loses at most
    one epoch, as before). An upload's error is raised at the next epoch or at ``close``."""

    def __init__(self, store: RunStore, ckpt_dir: Path, report: Report) -> None:
        self.store, self.ckpt_dir, self.report = store, ckpt_dir, report
        self.snapshots = ckpt_dir.parent / "ckpt-uploading"
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="ckpt-upload")
        self.inflight: Future | None = None

    def __call__(self, epoch: int, metrics: dict, path: Path | None) -> None:
        if path is not None:
            with timing.span("upload"):
                self.wait()  # the bucket holds the previous epoch before this one is handed over
                snapshot = self._snapshot(epoch)
                self.inflight = self.pool.submit(self._push, snapshot)
        self.report(epoch, metrics)

    def wait(self) -> None:
        done, self.inflight = self.inflight, None
        if done is not None:
            done.result()

    def close(self, ok: bool) -> None:
        """Wait for the last upload (its error raised only if the stage itself went well)."""
        try:
            if ok:
                with timing.span("upload"):
                    self.wait()
        finally:
            self.pool.shutdown(wait=True)
            shutil.rmtree(self.snapshots, ignore_errors=True)

    def _snapshot(self, epoch: int) -> Path:
        snapshot = self.snapshots / f"epoch-{epoch}"
        shutil.rmtree(snapshot, ignore_errors=True)
        for path in self.ckpt_dir.rglob("*"):
            if path.is_file() and not path.name.endswith(PARTIAL):
                link = snapshot / path.relative_to(self.ckpt_dir)
                link.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(path, link)
                except OSError:  # a file system without hard links: a copy is a snapshot too
                    shutil.copy2(path, link)
        return snapshot

    def _push(self, snapshot: Path) -> None:
        try:
            self.store.push_checkpoint_dir(self.ckpt_dir, files_from=snapshot)
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)


@contextmanager
def epoch_uploads(store: RunStore, ckpt_dir: Path, report: Report) -> Iterator[EpochUploads]:
    """``EpochUploads`` for one fit; the last upload has landed when the block ends well."""
    uploads = EpochUploads(store, ckpt_dir, report)
    ok = False
    try:
        yield uploads
        ok = True
    finally:
        uploads.close(ok)


def mark_reused(record: T) -> T:
    """A stored stage product read back from S3: its stage record says nothing was trained."""
    return replace(record, stage=replace(record.stage, reused=True))  # type: ignore[attr-defined]


def save_state(path: Path, state: dict[str, torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
    tmp.replace(path)


def load_weights(uri: str) -> dict[str, torch.Tensor]:
    """Weights stored at an ``s3://`` URI (safetensors: loading never unpickles)."""
    return safetensors.torch.load(storage.get_bytes(storage.parse_s3_uri(uri)))


def save_png(path: Path, image: np.ndarray) -> None:
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    Image.fromarray(arr.astype(np.uint8)).save(path)


def stage_record(store: RunStore, result, config: dict) -> StageRecord:
    """The record of a stage that just trained (``result``: history, seconds, resumed_from)."""
    return StageRecord(
        key=store.key,
        checkpoint_uri=store.uri,
        history=tuple(result.history),
        seconds=float(result.seconds),
        resumed_from=result.resumed_from,
        config=config,
    )
