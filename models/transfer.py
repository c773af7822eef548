"""Target training: transfer modes (finetune, linear_probe, lp_ft, freeze=<stage>) and the scratch
baseline (init_state=None), with best-on-validation selection, per-epoch checkpoints and resume."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backbones.base import Backbone
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
from .config import RUNTIME_FIELDS, TrainConfig, default_pad
from .data import check_images, to_device
from .device import configure_threads, memory_format, seed_everything, select_device
from .errors import CheckpointError, ModelError, TrainingError, UnknownNameError
from .freezing import freeze, unfreeze
from .loop import Augment, evaluate, lr_factor, steps_per_epoch, train_one_epoch
from .probe import fit_probe
from .registry import backbone_class, get_backbone

BASE_MODES = ("finetune", "linear_probe", "lp_ft")
EpochCallback = Callable[[int, dict, Path | None], None]


def list_transfer_modes(backbone: str | None = None) -> list[str]:
    """finetune, linear_probe, lp_ft and freeze=<stage>: concrete stage names when a backbone is
    given, the template "freeze=<stage>" otherwise."""
    if backbone is None:
        return [*BASE_MODES, "freeze=<stage>"]
    return [*BASE_MODES, *(f"freeze={s}" for s in backbone_class(backbone).stage_names)]


def parse_mode(mode: str, backbone: str) -> tuple[str, str | None]:
    """("finetune" | "linear_probe" | "lp_ft" | "freeze", stage); the error lists valid modes."""
    if mode in BASE_MODES:
        return mode, None
    if mode.startswith("freeze=") and mode[7:] in backbone_class(backbone).stage_names:
        return "freeze", mode[7:]
    raise UnknownNameError("transfer mode", mode, list_transfer_modes(backbone))


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
        detail = "; ".join(
            s
            for s in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {extra[:3]}" if extra else "",
                ", ".join(
                    f"{k}: state {theirs[k]} vs model {tuple(own[k])}" for k in sorted(bad)[:3]
                ),
            )
            if s
        )
        raise CheckpointError(
            f"init_state does not fit backbone {model.name!r} (in_channels={model.in_channels}): "
            f"{detail}; pretrain with the same backbone and channels"
        )
    model.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith("head.")}, strict=False
    )


def _identity(
    *,
    backbone: str,
    in_channels: int,
    image_size: tuple[int, int],
    num_classes: int,
    mode: str,
    init_state: Mapping | None,
    train: tuple,
    val: tuple,
    config: TrainConfig,
) -> dict[str, Any]:
    cfg = {k: v for k, v in config.to_dict().items() if k not in RUNTIME_FIELDS}
    return {
        "kind": "fit_target",
        "backbone": backbone,
        "in_channels": in_channels,
        "num_classes": num_classes,
        "image_size": list(image_size),
        "mode": mode,
        "init": "scratch" if init_state is None else fingerprint(init_state),
        "data": fingerprint(train[0], train[1], val[0], val[1]),
        "config": cfg,
    }


def _check_resume(directory: Path, ident: dict[str, Any]) -> dict[str, Any]:
    meta = read_meta(directory)
    shape_keys = ("backbone", "in_channels", "num_classes", "image_size")
    check_compatible(meta, {k: ident[k] for k in shape_keys}, directory)
    check_compatible(meta, {k: ident[k] for k in ("kind", "mode", "init", "data")}, directory)
    flat = {f"config.{k}": v for k, v in meta.get("config", {}).items()}
    check_compatible(flat, {f"config.{k}": v for k, v in ident["config"].items()}, directory)
    return meta


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
    kind, stage = parse_mode(mode, backbone)
    for name, (xs, ys) in (("train", train), ("val", val)):
        check_images(
            name,
            xs,
            in_channels=in_channels,
            image_size=image_size,
            labels=ys,
            num_classes=num_classes,
        )
    configure_threads(config.num_threads)
    device = select_device(config.device)
    seed_everything(config.seed)
    model = get_backbone(
        backbone, in_channels=in_channels, num_classes=num_classes, image_size=image_size
    )
    if init_state is not None:
        load_trunk(model, init_state)
    model.to(device, memory_format=memory_format(device))
    xtr, ytr = to_device(*train, device)
    xval, yval = to_device(*val, device)
    ident = _identity(
        backbone=backbone,
        in_channels=in_channels,
        image_size=image_size,
        num_classes=num_classes,
        mode=mode,
        init_state=init_state,
        train=train,
        val=val,
        config=config,
    )
    ckdir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    meta = _check_resume(ckdir, ident) if has_checkpoint(ckdir) else None
    pad = config.pad if config.pad is not None else default_pad(image_size)
    probe_history: list[dict] = []

    if kind in ("linear_probe", "lp_ft") and meta is None:
        freeze(model)
        pr = fit_probe(
            model,
            (xtr, ytr),
            (xval, yval),
            num_classes=num_classes,
            views=config.probe_views,
            pad=pad,
            hflip=config.hflip,
            weight_decays=config.probe_weight_decays,
            max_iter=config.probe_max_iter,
            gen=torch.Generator().manual_seed(config.seed + 1),
            batch_size=config.eval_batch_size,
        )
        model.head = pr.head
        probe_history = pr.history
        if kind == "lp_ft":
            unfreeze(model)
        else:
            row = dict(pr.history[pr.best_index], epoch=1, seconds=pr.seconds)
            path = None
            if ckdir is not None:
                path = save_checkpoint(
                    ckdir,
                    epoch=1,
                    weights=model.state_dict(),
                    meta={
                        **ident,
                        "history": [row],
                        "probe_history": probe_history,
                        "best_epoch": 1,
                        "best_val_acc": row["val_acc"],
                        "epochs_total": 1,
                        "train_images": pr.images_featurised,
                        "train_seconds": pr.seconds,
                    },
                )
            if on_epoch_end is not None:
                on_epoch_end(1, row, path)
            return _result(
                model,
                [row],
                1,
                row["val_acc"],
                t_start,
                pr.images_featurised / max(pr.seconds, 1e-9),
                None,
                probe_history,
            )
    if kind == "linear_probe":  # finished probe in the checkpoint
        ck = load_checkpoint(ckdir, which="best")
        freeze(model)
        model.load_state_dict(ck.weights)
        m = ck.meta
        return _result(
            model,
            m["history"],
            1,
            m["best_val_acc"],
            t_start,
            m["train_images"] / max(m["train_seconds"], 1e-9),
            1,
            m["probe_history"],
        )
    if kind == "freeze":
        freeze(model, stage)
    return _train_epochs(
        model,
        kind,
        init_state is not None,
        (xtr, ytr),
        (xval, yval),
        config,
        pad,
        ident,
        ckdir,
        meta,
        on_epoch_end,
        t_start,
        probe_history,
    )


def _optimizer(
    model: Backbone, lr: float, trunk_lr: float, weight_decay: float
) -> torch.optim.AdamW:
    trunk = [
        p for n, p in model.named_parameters() if not n.startswith("head.") and p.requires_grad
    ]
    head = [p for p in model.head.parameters() if p.requires_grad]
    groups = [{"params": head, "lr": lr, "peak_lr": lr, "name": "head"}]
    if trunk:
        groups.append({"params": trunk, "lr": trunk_lr, "peak_lr": trunk_lr, "name": "trunk"})
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def _train_epochs(
    model: Backbone,
    kind: str,
    pretrained: bool,
    train: tuple,
    val: tuple,
    config: TrainConfig,
    pad: int,
    ident: dict,
    ckdir: Path | None,
    meta: dict | None,
    on_epoch_end: EpochCallback | None,
    t_start: float,
    probe_history: list[dict],
) -> FitResult:
    lr = config.lr * (config.lp_ft_lr_scale if kind == "lp_ft" else 1.0)
    # A random trunk has nothing to preserve: scratch trains it at the head's rate.
    trunk_lr = lr * (config.backbone_lr_scale if pretrained else 1.0)
    opt = _optimizer(model, lr, trunk_lr, config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    steps = steps_per_epoch(len(train[0]), config.batch_size, config.min_steps_per_epoch)
    total = steps * config.epochs

    def lr_at(s: int) -> float:
        return lr_factor(s, total, config.schedule, config.warmup_frac)

    start, history, best_epoch, best_key, best_state = 0, [], 0, (-1.0, -math.inf), None
    images, train_seconds, resumed_from = 0, 0.0, None
    if meta is not None:
        ck = load_checkpoint(ckdir)
        model.load_state_dict(ck.weights)
        load_optimizer_state(opt, "optim", ck.state, meta["optimizer"])
        load_rng_state(gen, ck.state, meta["rng"])
        start = resumed_from = meta["epoch"]
        history, probe_history = meta["history"], meta.get("probe_history", [])
        best_epoch = meta["best_epoch"]
        best_key = (meta["best_val_acc"], -meta["best_val_loss"])
        best_state = load_checkpoint(ckdir, epoch=best_epoch).weights
        images, train_seconds = meta["train_images"], meta["train_seconds"]
    aug = Augment(pad=pad, hflip=config.hflip)
    for epoch in range(start + 1, config.epochs + 1):
        t0 = time.perf_counter()
        m = train_one_epoch(
            model,
            *train,
            optimizer=opt,
            gen=gen,
            steps=steps,
            batch_size=config.batch_size,
            augment=aug,
            lr_at=lr_at,
            step0=(epoch - 1) * steps,
            label_smoothing=config.label_smoothing,
        )
        t_train = time.perf_counter() - t0
        if not math.isfinite(m["train_loss"]):
            kept = (
                f"last good checkpoint (epoch {epoch - 1}) kept in {ckdir}"
                if ckdir and epoch > 1
                else "no checkpoint written"
            )
            raise TrainingError(
                f"training loss became {m['train_loss']} in epoch {epoch} of mode {ident['mode']!r} "
                f"(lr {config.lr:g}); {kept}; lower TrainConfig.lr"
            )
        images, train_seconds = images + m["images"], train_seconds + t_train
        v = evaluate(model, *val, batch_size=config.eval_batch_size)
        row = {
            "epoch": epoch,
            "train_loss": m["train_loss"],
            "train_acc": m["train_acc"],
            "val_loss": v["loss"],
            "val_acc": v["acc"],
            "lr": m["lr"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        if (v["acc"], -v["loss"]) > best_key:
            best_key, best_epoch = (v["acc"], -v["loss"]), epoch
            best_state = {k: t.detach().cpu().clone() for k, t in model.state_dict().items()}
        path = None
        if ckdir is not None:
            ot, oj = optimizer_state(opt, "optim")
            rt, rj = rng_state(gen)
            path = save_checkpoint(
                ckdir,
                epoch=epoch,
                weights=model.state_dict(),
                state={**ot, **rt},
                keep=[best_epoch],
                meta={
                    **ident,
                    "history": history,
                    "probe_history": probe_history,
                    "best_epoch": best_epoch,
                    "best_val_acc": best_key[0],
                    "best_val_loss": -best_key[1],
                    "epochs_total": config.epochs,
                    "optimizer": oj,
                    "rng": rj,
                    "scheduler": {
                        "step": epoch * steps,
                        "total_steps": total,
                        "steps_per_epoch": steps,
                    },
                    "train_images": images,
                    "train_seconds": train_seconds,
                },
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, row, path)
    if best_state is None:
        raise ModelError("no training epoch ran; set TrainConfig.epochs >= 1")
    model.load_state_dict(best_state)
    return _result(
        model,
        history,
        best_epoch,
        best_key[0],
        t_start,
        images / max(train_seconds, 1e-9),
        resumed_from,
        probe_history,
    )


def _result(
    model: Backbone,
    history: list[dict],
    best_epoch: int,
    best_val_acc: float,
    t_start: float,
    ips: float,
    resumed_from: int | None,
    probe_history: list[dict],
) -> FitResult:
    model.cpu().eval()
    return FitResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        best_val_acc=float(best_val_acc),
        seconds=time.perf_counter() - t_start,
        images_per_second=float(ips),
        resumed_from=resumed_from,
        probe_history=probe_history,
    )
