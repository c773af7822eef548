"""Batch augmentation in torch on the training device: random crop with zero padding and optional
horizontal flips. Random draws come from a CPU generator (checkpointed), made once per epoch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def batch_indices(n: int, batch_size: int, steps: int, gen: torch.Generator) -> torch.Tensor:
    """(steps, b) sample indices, b = min(batch_size, n): consecutive random permutations, so every
    image is seen before any repeats and tiny sets still fill `steps` full batches."""
    b = min(batch_size, n)
    need = steps * b
    perms = [torch.randperm(n, generator=gen) for _ in range(-(-need // n))]
    return torch.cat(perms)[:need].view(steps, b)


def draw_augment(
    shape: tuple[int, ...], pad: int, hflip: bool, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image crop offsets (oy, ox) in [0, 2·pad] and flip flags, for `shape` = (steps, b)."""
    oy = torch.randint(0, 2 * pad + 1, shape, generator=gen)
    ox = torch.randint(0, 2 * pad + 1, shape, generator=gen)
    flip = torch.rand(shape, generator=gen) < 0.5 if hflip else torch.zeros(shape, dtype=torch.bool)
    return oy, ox, flip


def apply_augment(
    x: torch.Tensor, pad: int, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    """Shift each image of x (N, C, H, W) by its offset inside a zero border of `pad` px, then flip
    the flagged ones. Two gathers; no Python loop over images."""
    if pad > 0:
        n, c, h, w = x.shape
        xp = F.pad(x, (pad, pad, pad, pad))
        rows = oy.to(x.device)[:, None] + torch.arange(h, device=x.device)
        cols = ox.to(x.device)[:, None] + torch.arange(w, device=x.device)
        xp = xp.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * pad))
        x = xp.gather(3, cols[:, None, None, :].expand(n, c, h, w))
    if flip.any():
        f = flip.to(x.device)[:, None, None, None]
        x = torch.where(f, x.flip(-1), x)
    return x


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
