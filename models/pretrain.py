"""`pretrain(strategy, ...)`: source pretraining with any registered strategy, with per-epoch
checkpoints, resume, divergence checks and artifact images. Returns the trunk weights only."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import (
    check_compatible,
    fingerprint,
    has_checkpoint,
    load_checkpoint,
    load_optimizer_state,
    load_rng_state,
    optimizer_state,
    read_meta,
    rng_state,
    save_checkpoint,
)
from .config import RUNTIME_FIELDS, PretrainConfig
from .data import check_images, to_device
from .device import configure_threads, seed_everything, select_device
from .errors import ModelError, TrainingError
from .grids import plot_curves
from .registry import backbone_class, strategy_class


@dataclass
class PretrainResult:
    """What pretraining hands to transfer: trunk weights, per-epoch history and images to log."""

    backbone_state: dict[str, torch.Tensor]  # trunk only (CPU), loadable with a new head
    history: list[dict]  # per epoch: epoch, loss (+ strategy metrics), seconds
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)  # name -> H×W×3 uint8
    seconds: float = 0.0  # wall time of this call
    epochs_done: int = 0
    resumed_from: int | None = None  # epoch the run resumed after, None for a fresh run
    images_per_second: float = 0.0  # training images per second of training time


def pretrain(
    strategy: str,
    *,
    backbone: str,
    in_channels: int,
    image_size: tuple[int, int],
    images: np.ndarray,
    labels: np.ndarray | None = None,
    num_classes: int | None = None,
    config: PretrainConfig | None = None,
    checkpoint_dir: Path | str | None = None,
    on_epoch_end: Callable[[int, dict, Path | None], None] | None = None,
) -> PretrainResult:
    """Pretrain `backbone` on uint8 N×C×H×W `images` with `strategy` (supervised needs labels; gan
    and autoencoder ignore them, so the caller may pass source images, the target's unlabelled
    pool, or both concatenated). A compatible checkpoint in `checkpoint_dir` is resumed."""
    t_start = time.perf_counter()
    config = config or PretrainConfig()
    cls = strategy_class(strategy)
    backbone_class(backbone)
    image_size = (int(image_size[0]), int(image_size[1]))
    if cls.needs_labels:
        if labels is None:
            raise ModelError(
                f"strategy {strategy!r} needs labels; pass labels= or use gan/autoencoder"
            )
        num_classes = int(num_classes if num_classes is not None else int(np.max(labels)) + 1)
    else:
        labels, num_classes = None, None
    check_images(
        "pretraining",
        images,
        in_channels=in_channels,
        image_size=image_size,
        labels=labels,
        num_classes=num_classes,
    )
    configure_threads(config.num_threads)
    device = select_device(config.device)
    seed_everything(config.seed)
    strat = cls(
        backbone=backbone,
        in_channels=in_channels,
        image_size=image_size,
        num_classes=num_classes,
        num_images=len(images),
        config=config,
        device=device,
    )
    x, y = to_device(images, labels, device)
    gen = torch.Generator().manual_seed(config.seed)
    ident = {
        "kind": f"pretrain:{strategy}",
        "backbone": backbone,
        "in_channels": in_channels,
        "num_classes": num_classes,
        "image_size": list(image_size),
        "data": fingerprint(images, labels),
        "config": {k: v for k, v in config.to_dict().items() if k not in RUNTIME_FIELDS},
    }
    ckdir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    start, history, resumed_from, images_seen, train_seconds = 0, [], None, 0, 0.0
    if has_checkpoint(ckdir):
        meta = read_meta(ckdir)
        check_compatible(
            meta,
            {k: ident[k] for k in ("backbone", "in_channels", "num_classes", "image_size")},
            ckdir,
        )
        check_compatible(meta, {k: ident[k] for k in ("kind", "data")}, ckdir)
        check_compatible(
            {f"config.{k}": v for k, v in meta["config"].items()},
            {f"config.{k}": v for k, v in ident["config"].items()},
            ckdir,
        )
        ck = load_checkpoint(ckdir)
        for name, mod in strat.modules.items():
            mod.load_state_dict(
                {k[len(name) + 1 :]: v for k, v in ck.weights.items() if k.startswith(name + ".")}
            )
        for name, opt in strat.optimizers.items():
            load_optimizer_state(opt, name, ck.state, meta["optimizers"][name])
        load_rng_state(gen, ck.state, meta["rng"])
        start = resumed_from = meta["epoch"]
        history, images_seen, train_seconds = (
            meta["history"],
            meta["train_images"],
            meta["train_seconds"],
        )
    for epoch in range(start + 1, config.epochs + 1):
        t0 = time.perf_counter()
        m = strat.train_epoch(x, y, gen=gen, epoch=epoch)
        secs = time.perf_counter() - t0
        bad = {k: v for k, v in m.items() if "loss" in k and not math.isfinite(v)}
        if bad:
            kept = (
                f"last good checkpoint (epoch {epoch - 1}) kept in {ckdir}"
                if ckdir and epoch > 1
                else "no checkpoint written"
            )
            raise TrainingError(
                f"{strategy} pretraining diverged in epoch {epoch}: {bad}; {kept}; "
                "lower PretrainConfig.lr (or gan_lr)"
            )
        images_seen, train_seconds = images_seen + int(m.pop("images", 0)), train_seconds + secs
        row = {"epoch": epoch, **m, "seconds": secs}
        history.append(row)
        path = None
        if ckdir is not None:
            weights = {
                f"{n}.{k}": v
                for n, mod in strat.modules.items()
                for k, v in mod.state_dict().items()
            }
            state, opt_js = {}, {}
            for n, opt in strat.optimizers.items():
                t, js = optimizer_state(opt, n)
                state.update(t)
                opt_js[n] = js
            rt, rj = rng_state(gen)
            path = save_checkpoint(
                ckdir,
                epoch=epoch,
                weights=weights,
                state={**state, **rt},
                meta={
                    **ident,
                    "history": history,
                    "optimizers": opt_js,
                    "rng": rj,
                    "epochs_total": config.epochs,
                    "train_images": images_seen,
                    "train_seconds": train_seconds,
                },
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, row, path)
    artifacts = strat.artifacts(x)
    curves = {k: [r[k] for r in history] for k in (history[0] if history else {}) if "loss" in k}
    if len(curves) > 1:
        curves.pop("loss", None)  # GAN: show d_loss and g_loss, not their sum
    artifacts["loss_curve"] = plot_curves(curves)
    return PretrainResult(
        backbone_state=strat.backbone_state(),
        history=history,
        artifacts=artifacts,
        seconds=time.perf_counter() - t_start,
        epochs_done=len(history),
        resumed_from=resumed_from,
        images_per_second=images_seen / max(train_seconds, 1e-9),
    )
