"""`fit_target`: train a backbone on the target in any registered transfer mode (finetune,
linear_probe, lp_ft, freeze=<stage>, ...), or from random init (init_state=None: the scratch
baseline), selecting the epoch with the best validation accuracy. The epoch driver checkpoints,
resumes and stops on divergence; the mode says what is trained and how."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backbones.base import Backbone
from .checkpoint import fingerprint
from .config import TrainConfig, identity_dict
from .data import check_images, to_device
from .device import GLOBAL_RNG, memory_format
from .driver import EpochCallback, run_epochs, start_run
from .errors import CheckpointError
from .registry import get_backbone, get_transfer_mode
from .target import TargetRun


@dataclass
class FitResult:
    """A trained target model (CPU, eval mode, best-on-validation weights) and its numbers."""

    model: Backbone
    history: list[dict]  # per epoch: epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds
    best_epoch: int
    best_val_acc: float
    seconds: float  # wall time of this call (feature extraction, training, evaluation)
    images_per_second: float  # training images processed per second of training time
    resumed_from: int | None  # epoch the run resumed after, None for a fresh run
    probe_history: list[dict] = field(default_factory=list)  # linear_probe / lp_ft: L2 grid rows


def load_trunk(model: Backbone, state: Mapping[str, torch.Tensor]) -> None:
    """Load pretrained trunk weights into `model` (its head untouched); CheckpointError naming both
    sides when keys or shapes do not fit."""
    own = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("head.")}
    theirs = {k: tuple(v.shape) for k, v in state.items() if not k.startswith("head.")}
    missing = sorted(set(own) - set(theirs))
    extra = sorted(set(theirs) - set(own))
    bad = [k for k in own.keys() & theirs.keys() if tuple(own[k]) != theirs[k]]
    if missing or extra or bad:
        parts = [
            f"missing {missing[:3]}" if missing else "",
            f"unexpected {extra[:3]}" if extra else "",
            ", ".join(f"{k}: state {theirs[k]} vs model {tuple(own[k])}" for k in sorted(bad)[:3]),
        ]
        raise CheckpointError(
            f"init_state does not fit backbone {model.name!r} (in_channels={model.in_channels}): "
            f"{'; '.join(p for p in parts if p)}; pretrain with the same backbone and channels"
        )
    model.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith("head.")}, strict=False
    )


def _identity(
    backbone: str,
    model: Backbone,
    mode: str,
    init_state: Mapping | None,
    data: tuple[np.ndarray, ...],
    config: TrainConfig,
) -> dict[str, Any]:
    """What a checkpoint must match to be resumed by this run."""
    return {
        "kind": "fit_target",
        "backbone": backbone,
        "in_channels": model.in_channels,
        "num_classes": model.num_classes,
        "image_size": list(model.image_size),
        "mode": mode,
        "init": "scratch" if init_state is None else fingerprint(init_state),
        "data": fingerprint(*data),
        "config": identity_dict(config),
    }


def fit_target(
    *,
    backbone: str,
    init_state: Mapping[str, torch.Tensor] | None,
    mode: str,
    in_channels: int,
    image_size: tuple[int, int],
    num_classes: int,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    config: TrainConfig,
    checkpoint_dir: Path | str | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> FitResult:
    """Train `backbone` on the target (init from `init_state`, or random = the scratch baseline) in
    transfer `mode`; select the epoch with the best validation accuracy. A checkpoint_dir holding a
    compatible earlier run (same backbone, data, init and config) is resumed from its last epoch."""
    t_start = time.perf_counter()
    image_size = (int(image_size[0]), int(image_size[1]))
    transfer_mode = get_transfer_mode(mode, backbone)
    geometry = {"in_channels": in_channels, "image_size": image_size, "num_classes": num_classes}
    for name, (xs, ys) in (("train", train), ("val", val)):
        check_images(name, xs, labels=ys, **geometry)
    with GLOBAL_RNG:  # seeded and built alone: the same weights beside other stages
        device = start_run(config)
        model = get_backbone(backbone, **geometry)
        if init_state is not None:
            load_trunk(model, init_state)
        model.to(device, memory_format=memory_format(device))
    ident = _identity(backbone, model, mode, init_state, (*train, *val), config)
    run = TargetRun(
        model=model,
        mode=transfer_mode,
        train=to_device(*train, device),
        val=to_device(*val, device),
        config=config,
        num_classes=num_classes,
        pretrained=init_state is not None,
        ident=ident,
    )
    epochs = transfer_mode.epochs(config)
    progress = run_epochs(run, config, checkpoint_dir, on_epoch_end, epochs=epochs)
    return FitResult(
        model=run.best_model(),
        history=progress.history,
        best_epoch=run.best_epoch,
        best_val_acc=float(run.best_key[0]),
        seconds=time.perf_counter() - t_start,
        images_per_second=progress.images_per_second,
        resumed_from=progress.resumed_from,
        probe_history=run.probe_history,
    )
