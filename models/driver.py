"""The one epoch driver, shared by pretraining and target training: it runs an `EpochTask` epoch by
epoch and owns what every run needs around the epochs — a checkpoint after each epoch (weights,
optimiser and RNG state), resume from a compatible checkpoint, the divergence (non-finite loss)
stop and the per-epoch callback. Tasks only say what one epoch does and what state they hold."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .amp import configure_cuda
from .checkpoint import (
    check_compatible,
    has_checkpoint,
    load_checkpoint,
    load_optimizer_state,
    load_rng_state,
    optimizer_state,
    read_meta,
    rng_state,
    save_checkpoint,
)
from .config import RunConfig
from .device import GLOBAL_RNG, configure_threads, seed_everything, select_device
from .errors import TrainingError

EpochCallback = Callable[[int, dict, Path | None], None]
SHAPE_KEYS = ("backbone", "in_channels", "num_classes", "image_size")


class EpochTask:
    """What the driver trains. `ident` is what a checkpoint must match to be resumed (it is written
    into every checkpoint; SHAPE_KEYS and "config" required). `modules` are checkpointed as
    weights (a module named "" without a key prefix), `optimizers` with their state; subclasses
    implement `train_epoch`."""

    label: str = "training"  # names the run in errors, e.g. "gan pretraining"
    hint: str = "lower the learning rate"  # the fix named when the loss diverges

    def __init__(self, ident: Mapping[str, Any]) -> None:
        self.ident = dict(ident)
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def prepare(self, fresh: bool) -> None:
        """Called once the checkpoint is read, before any state is restored: `fresh` is False
        when the run resumes. Build what depends on it (e.g. optimisers after freezing)."""

    def train_epoch(self, epoch: int, gen: torch.Generator) -> dict[str, float]:
        """One epoch; metrics whose name contains "loss" are checked, "images" is counted."""
        raise NotImplementedError

    def epoch_row(self, epoch: int, metrics: dict[str, float]) -> dict[str, float]:
        """The history row for a finished epoch (e.g. after a validation pass)."""
        return metrics

    def meta(self, epoch: int) -> dict[str, Any]:
        """Extra checkpoint metadata, read back by `restore`."""
        return {}

    def keep(self) -> list[int]:
        """Epochs whose weight files are kept besides the latest (e.g. the best)."""
        return []

    def restore(self, meta: Mapping[str, Any], directory: Path) -> None:
        """Restore the extra state written by `meta` when resuming."""

    def weights(self) -> dict[str, torch.Tensor]:
        return {
            f"{n}.{k}" if n else k: v
            for n, mod in self.modules.items()
            for k, v in mod.state_dict().items()
        }

    def load_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        for n, mod in self.modules.items():
            pre = f"{n}." if n else ""
            mod.load_state_dict({k[len(pre) :]: v for k, v in weights.items() if k.startswith(pre)})


@dataclass
class Progress:
    """Where a run stands: finished epochs, their history and the training throughput."""

    epoch: int = 0  # last finished epoch
    history: list[dict] = field(default_factory=list)
    resumed_from: int | None = None  # epoch the run resumed after, None for a fresh run
    images: int = 0  # training images processed
    train_seconds: float = 0.0  # time spent in train_epoch

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.train_seconds, 1e-9)


def start_run(config: RunConfig) -> torch.device:
    """Threads, device (and its CUDA switches) and seeds for a run, in this order (before any
    model is built)."""
    configure_threads(config.num_threads)
    device = select_device(config.device)
    configure_cuda(device)
    seed_everything(config.seed)
    return device


def open_checkpoint(
    checkpoint_dir: Path | str | None, ident: Mapping[str, Any]
) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint folder and, when it holds an earlier run, that run's meta — after checking
    it was written by a run with the same `ident` (CheckpointError naming both sides if not)."""
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if not has_checkpoint(directory):
        return directory, None
    meta = read_meta(directory)
    check_compatible(meta, {k: ident[k] for k in SHAPE_KEYS}, directory)
    rest = {k: v for k, v in ident.items() if k not in SHAPE_KEYS and k != "config"}
    check_compatible(meta, rest, directory)
    check_compatible(
        _flat("config", meta.get("config", {})), _flat("config", ident["config"]), directory
    )
    return directory, meta


def _flat(prefix: str, d: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(f"{prefix}.{k}", v))
        else:
            out[f"{prefix}.{k}"] = v
    return out


def run_epochs(
    task: EpochTask,
    config: RunConfig,
    checkpoint_dir: Path | str | None = None,
    on_epoch_end: EpochCallback | None = None,
    *,
    epochs: int | None = None,
) -> Progress:
    """Train `task` up to `epochs` (default config.epochs) with a data generator seeded by
    config.seed; resume after the last epoch of a compatible checkpoint in `checkpoint_dir` and
    checkpoint every epoch there (when set); call `on_epoch_end(epoch, row, checkpoint path or
    None)` after each epoch."""
    epochs = config.epochs if epochs is None else epochs
    directory, meta = open_checkpoint(checkpoint_dir, task.ident)
    gen = torch.Generator().manual_seed(config.seed)
    with GLOBAL_RNG:  # a probe head's fit, a resumed run's global RNG state: alone
        task.prepare(fresh=meta is None)
        progress = _restore(task, gen, directory, meta) if meta is not None else Progress()
    for epoch in range(progress.epoch + 1, epochs + 1):
        row = _epoch(task, epoch, gen, progress, directory)
        path = None
        if directory is not None:
            path = _save(task, gen, progress, epochs, directory)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row, path)
    return progress


def _epoch(
    task: EpochTask, epoch: int, gen: torch.Generator, progress: Progress, directory: Path | None
) -> dict:
    t0 = time.perf_counter()
    m = task.train_epoch(epoch, gen)
    secs = time.perf_counter() - t0
    bad = {k: v for k, v in m.items() if "loss" in k and not math.isfinite(v)}
    if bad:
        kept = (
            f"last good checkpoint (epoch {epoch - 1}) kept in {directory}"
            if directory and epoch > 1
            else "no checkpoint written"
        )
        what = ", ".join(f"{k} became {v}" for k, v in bad.items())
        raise TrainingError(f"{task.label}: {what} in epoch {epoch}; {kept}; {task.hint}")
    progress.images += int(m.pop("images", 0))
    progress.train_seconds += secs
    row = {"epoch": epoch, **task.epoch_row(epoch, m), "seconds": time.perf_counter() - t0}
    progress.history.append(row)
    progress.epoch = epoch
    return row


def _save(
    task: EpochTask,
    gen: torch.Generator,
    progress: Progress,
    epochs: int,
    directory: Path,
) -> Path:
    state: dict[str, torch.Tensor] = {}
    opt_js: dict[str, Any] = {}
    for name, opt in task.optimizers.items():
        tensors, opt_js[name] = optimizer_state(opt, name)
        state.update(tensors)
    rng_t, rng_js = rng_state(gen)
    return save_checkpoint(
        directory,
        epoch=progress.epoch,
        weights=task.weights(),
        state={**state, **rng_t},
        keep=task.keep(),
        meta={
            **task.ident,
            "history": progress.history,
            **task.meta(progress.epoch),
            "epochs_total": epochs,
            "optimizers": opt_js,
            "rng": rng_js,
            "train_images": progress.images,
            "train_seconds": progress.train_seconds,
        },
    )


def _restore(
    task: EpochTask, gen: torch.Generator, directory: Path | None, meta: Mapping[str, Any]
) -> Progress:
    assert directory is not None, "resume needs the checkpoint directory"
    ck = load_checkpoint(directory)
    task.load_weights(ck.weights)
    for name, opt in task.optimizers.items():
        load_optimizer_state(opt, name, ck.state, meta["optimizers"][name])
    load_rng_state(gen, ck.state, meta["rng"])
    task.restore(meta, directory)
    return Progress(
        epoch=meta["epoch"],
        history=list(meta["history"]),
        resumed_from=meta["epoch"],
        images=meta["train_images"],
        train_seconds=meta["train_seconds"],
    )
