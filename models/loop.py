"""Small loop functions that return numbers (torchvision `train_one_epoch`, airbench `evaluate`).
The data stays on the device as uint8 tensors; batches are indexed and augmented in torch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import apply_augment, batch_indices, draw_augment, to_float
from .config import ClassifierConfig, OptimConfig
from .device import autocast, memory_format
from .errors import ModelError


@dataclass
class Augment:
    """What train_one_epoch does to each batch."""

    pad: int = 0  # random-crop padding in px (0: no shift)
    hflip: bool = False  # random horizontal flips


def lr_factor(step: int, total: int, schedule: str, warmup_frac: float) -> float:
    """Multiplier of the peak learning rate at `step` of `total`: "onecycle" = linear warm-up then
    cosine to ~0; "cosine" = cosine from the peak; "constant" = 1."""
    if schedule == "constant" or total <= 0:
        return 1.0
    warm = int(round(warmup_frac * total)) if schedule == "onecycle" else 0
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t))) * 0.99 + 0.01


def steps_per_epoch(n: int, batch_size: int, min_steps: int) -> int:
    """One pass over n images, but never fewer than `min_steps` updates."""
    return max(-(-n // min(batch_size, n)), min_steps)


def train_one_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    steps: int,
    batch_size: int,
    augment: Augment,
    lr_at: Callable[[int], float] | None = None,
    step0: int = 0,
    label_smoothing: float = 0.0,
) -> dict[str, float]:
    """`steps` updates of cross-entropy on (x uint8 N×C×H×W, y int64) already on the device.
    Each param group's lr = its `peak_lr` × lr_at(global step). Returns train_loss, train_acc, lr
    (non-finite train_loss means divergence: the caller decides what to do)."""
    device = x.device
    model.train()
    idx = batch_indices(len(x), batch_size, steps, gen).to(device)
    oy, ox, flip = draw_augment(tuple(idx.shape), augment.pad, augment.hflip, gen)
    mf = memory_format(device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    lr = optimizer.param_groups[0]["lr"]
    for s in range(steps):
        if lr_at is not None:
            f = lr_at(step0 + s)
            for g in optimizer.param_groups:
                g["lr"] = g["peak_lr"] * f
            lr = optimizer.param_groups[0]["lr"]
        b = idx[s]
        xb = apply_augment(to_float(x[b]), augment.pad, oy[s], ox[s], flip[s])
        xb = xb.contiguous(memory_format=mf)
        yb = y[b]
        with autocast(device):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()
        correct += (logits.detach().argmax(1) == yb).sum()
    n = steps * idx.shape[1]
    return {
        "train_loss": float(loss_sum) / steps,
        "train_acc": int(correct) / n,
        "lr": float(lr),
        "steps": steps,
        "images": n,
    }


def adamw(params: Iterable[nn.Parameter], config: OptimConfig) -> torch.optim.AdamW:
    """One-group AdamW at the config's peak lr (the group's `peak_lr` drives lr schedules)."""
    return torch.optim.AdamW(
        [{"params": params, "peak_lr": config.lr}], lr=config.lr, weight_decay=config.weight_decay
    )


def classifier_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    epoch: int,
    steps: int,
    total_steps: int,
    batch_size: int,
    config: ClassifierConfig,
    pad: int,
) -> dict[str, float]:
    """Epoch `epoch` (1-based) of `total_steps` / `steps` epochs: train_one_epoch with the
    config's schedule, label smoothing and crop/flip augmentation."""
    return train_one_epoch(
        model,
        x,
        y,
        optimizer=optimizer,
        gen=gen,
        steps=steps,
        batch_size=batch_size,
        augment=Augment(pad=pad, hflip=config.hflip),
        lr_at=lambda s: lr_factor(s, total_steps, config.schedule, config.warmup_frac),
        step0=(epoch - 1) * steps,
        label_smoothing=config.label_smoothing,
    )


def _batches(
    images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray | None, bs: int
) -> Iterable[tuple[torch.Tensor, torch.Tensor | None]]:
    for i in range(0, len(images), bs):
        xb = images[i : i + bs]
        yb = None if labels is None else labels[i : i + bs]
        xb = torch.as_tensor(xb)
        yb = None if yb is None else torch.as_tensor(yb)
        yield xb, yb


@torch.no_grad()
def _logits(
    model: nn.Module, batches: Iterable, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    model.eval()
    mf = memory_format(device)
    outs, ys = [], []
    for xb, yb in batches:
        xb = to_float(torch.as_tensor(xb).to(device, non_blocking=True)).contiguous(
            memory_format=mf
        )
        with autocast(device):
            outs.append(model(xb).float())
        if yb is not None:
            ys.append(torch.as_tensor(yb).to(device))
    if not outs:
        raise ModelError("evaluate/predict got no images; pass a non-empty array")
    return torch.cat(outs), (torch.cat(ys) if ys else None)


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is None:
        return next(model.parameters()).device
    return torch.device(device) if isinstance(device, str) else device


def evaluate(
    model: nn.Module,
    images: torch.Tensor | np.ndarray | Iterable,
    labels: torch.Tensor | np.ndarray | None = None,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of `model` on uint8 (or [0,1] float) N×C×H×W images and
    int labels, or on an iterable of (images, labels) batches when `labels` is None."""
    dev = _model_device(model, device)
    model.to(dev)
    batches = _batches(images, labels, batch_size) if labels is not None else images
    logits, y = _logits(model, batches, dev)
    if y is None:
        raise ModelError("evaluate needs labels: pass (images, labels) or batches of both")
    return {
        "loss": float(F.cross_entropy(logits, y.long())),
        "acc": float((logits.argmax(1) == y).float().mean()),
    }


def predict_proba(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Class probabilities (N, num_classes) float32 for uint8 N×C×H×W images, computed on `device`
    (default: where the model is)."""
    dev = _model_device(model, device)
    model.to(dev)
    logits, _ = _logits(model, _batches(images, None, batch_size), dev)
    return torch.softmax(logits, 1).cpu().numpy().astype(np.float32)


@torch.no_grad()
def extract_features(
    model: nn.Module, images: torch.Tensor, *, batch_size: int = 512
) -> torch.Tensor:
    """Pooled trunk features (N, D) float32 for uint8 or float images already on the device."""
    model.eval()
    dev = images.device
    mf = memory_format(dev)
    out = []
    for i in range(0, len(images), batch_size):
        xb = to_float(images[i : i + batch_size]).contiguous(memory_format=mf)
        with autocast(dev):
            out.append(model.forward_features(xb).float())
    return torch.cat(out)
