"""What training stages share: weights and images on local disk beside the stage's S3 prefix
(safetensors, never pickles), the per-epoch upload callback and the reuse marker."""

from __future__ import annotations

from collections.abc import Callable
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
from warmstart.runstore import RunStore

Report = Callable[[int, dict], None]  # (epoch, metrics) after every epoch of a training stage
T = TypeVar("T")


def no_report(epoch: int, metrics: dict) -> None:
    return None


def epoch_pusher(store: RunStore, ckpt_dir: Path, report: Report):
    """Per-epoch callback: upload the epoch checkpoint to the bucket, then report the metrics."""

    def on_epoch_end(epoch: int, metrics: dict, path: Path | None) -> None:
        if path is not None:
            with timing.span("upload"):
                store.push_checkpoint_dir(ckpt_dir)
        report(epoch, metrics)

    return on_epoch_end


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
