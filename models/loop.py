"""Small loop functions that return numbers (torchvision `train_one_epoch`, airbench `evaluate`).
The data stays on the device as uint8 tensors (or on the host, streamed through pinned memory);
batches are indexed and augmented in torch. On CUDA: autocast (models/amp.py), channels_last and
no host sync inside an epoch; on CPU the arithmetic is plain fp32, unchanged."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .amp import Precision, precision
from .augment import batch_indices, to_float
from .batches import BatchSource
from .config import ClassifierConfig, OptimConfig
from .device import memory_format
from .errors import ModelError
from .feeds import Augment
from .feeds import Feed as _Feed
from .feeds import SourceFeed as _SourceFeed
from .feeds import to_device_async as _to_device


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


def _step(
    model: nn.Module,
    xb: torch.Tensor,
    yb: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    amp: Precision,
    label_smoothing: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One update; returns (loss, logits) as device tensors (nothing read back to the host)."""
    with amp.autocast():
        logits = model(xb)
    loss = F.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    scaler = amp.scaler(optimizer)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:  # fp16: scaled backward; a fused optimizer skips inf steps without a host sync
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss, logits


def _set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    for g in optimizer.param_groups:
        g["lr"] = g["peak_lr"] * factor
    return optimizer.param_groups[0]["lr"]


def train_one_epoch(
    model: nn.Module,
    x: torch.Tensor | BatchSource,
    y: torch.Tensor | None,
    *,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    steps: int,
    batch_size: int,
    augment: Augment,
    lr_at: Callable[[int], float] | None = None,
    step0: int = 0,
    label_smoothing: float = 0.0,
    device: torch.device | str | None = None,
    amp: Precision | None = None,
) -> dict[str, float]:
    """`steps` updates of cross-entropy on (x uint8 N×C×H×W, y int64), held on the compute
    `device` (default: x's) or on the host (then streamed batch by batch through pinned memory),
    or on the labelled batches of a `BatchSource` x (y None; device default: the CPU).
    Each param group's lr = its `peak_lr` × lr_at(global step). `amp` defaults to the device's
    precision (bf16/fp16 autocast on CUDA, fp32 elsewhere). Loss and accuracy accumulate on the
    device and are read once, at the end: no host sync per step. Returns train_loss, train_acc,
    lr (non-finite train_loss means divergence: the caller decides what to do)."""
    if isinstance(x, torch.Tensor):
        dev = x.device if device is None else torch.device(device)
        feed = _Feed(x, y, batch_indices(len(x), batch_size, steps, gen), dev, augment, gen)
    else:
        dev = torch.device("cpu" if device is None else device)
        feed = _SourceFeed(x, steps, batch_size, dev, augment, gen)
    amp = precision(dev) if amp is None else amp
    model.train()
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    lr, n = optimizer.param_groups[0]["lr"], 0
    for s in range(steps):
        if lr_at is not None:
            lr = _set_lr(optimizer, lr_at(step0 + s))
        xb, yb = feed.batch(s)
        loss, logits = _step(model, xb, yb, optimizer, amp, label_smoothing)
        feed.prefetch(s + 1)  # host data: the next batch's gather overlaps this step
        loss_sum += loss.detach()
        correct += (logits.detach().argmax(1) == yb).sum()
        n += len(yb)
    return {
        "train_loss": float(loss_sum) / steps,
        "train_acc": int(correct) / n,
        "lr": float(lr),
        "steps": steps,
        "images": n,
    }


def adamw(params: Iterable[nn.Parameter], config: OptimConfig) -> torch.optim.AdamW:
    """One-group AdamW at the config's peak lr (the group's `peak_lr` drives lr schedules); the
    fused kernel when every parameter is on CUDA (one launch per step, and fp16 loss scaling
    without a host sync)."""
    params = list(params)
    fused = True if params and all(p.is_cuda for p in params) else None
    return torch.optim.AdamW(
        [{"params": params, "peak_lr": config.lr}],
        lr=config.lr,
        weight_decay=config.weight_decay,
        fused=fused,
    )


def classifier_epoch(
    model: nn.Module,
    x: torch.Tensor | BatchSource,
    y: torch.Tensor | None,
    *,
    config: ClassifierConfig,
    epoch: int,
    steps: int,
    total_steps: int,
    batch_size: int,
    pad: int,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Epoch `epoch` (1-based) of `total_steps` / `steps` epochs: train_one_epoch with the
    config's schedule, label smoothing and crop/flip augmentation (on `device`, default x's:
    host-held x with a CUDA device streams batches through pinned memory; x may be a labelled
    `BatchSource`, y None)."""
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
        device=device,
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
    amp = precision(device)
    outs, ys = [], []
    for xb, yb in batches:
        xb = to_float(_to_device(xb, device)).contiguous(memory_format=mf)
        with amp.autocast():
            outs.append(model(xb).float())
        if yb is not None:
            ys.append(_to_device(yb, device))
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
    amp = precision(dev)
    out = []
    for i in range(0, len(images), batch_size):
        xb = to_float(images[i : i + batch_size]).contiguous(memory_format=mf)
        with amp.autocast():
            out.append(model.forward_features(xb).float())
    return torch.cat(out)
