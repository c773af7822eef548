"""Artifact images as H×W×3 uint8 arrays (the caller logs them): image grids and loss curves.
Pure numpy/torchvision, so models/ needs no plotting library."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189)]


def image_grid(images: torch.Tensor, *, nrow: int = 8, min_tile: int = 32) -> np.ndarray:
    """Float images (N, C, H, W) in [0, 1] as one RGB grid; tiny images are enlarged (nearest) so
    each tile is at least `min_tile` px."""
    x = images.detach().float().cpu().clamp(0, 1)
    scale = max(1, math.ceil(min_tile / min(x.shape[-2:])))
    if scale > 1:
        x = F.interpolate(x, scale_factor=scale, mode="nearest")
    grid = make_grid(x, nrow=nrow, padding=2, pad_value=1.0)  # grey input becomes 3 channels
    if grid.shape[0] == 1:
        grid = grid.expand(3, -1, -1)
    return (grid * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def _line(img: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], colour: tuple) -> None:
    n = int(max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1]))) + 2
    xs = np.linspace(p0[0], p1[0], n).round().astype(int)
    ys = np.linspace(p0[1], p1[1], n).round().astype(int)
    h, w = img.shape[:2]
    for dy in (0, 1):
        img[np.clip(ys + dy, 0, h - 1), np.clip(xs, 0, w - 1)] = colour


def plot_curves(
    series: Mapping[str, Sequence[float]], *, width: int = 320, height: int = 200
) -> np.ndarray:
    """Line plot of each series over its index (shared y-range, one colour each, grey axes), as an
    RGB image. A legend strip at the top shows each series' colour, in insertion order."""
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    m = 16
    img[m : height - m, m] = 160
    img[height - m, m : width - m] = 160
    vals = [v for s in series.values() for v in s if np.isfinite(v)]
    if not vals:
        return img
    lo, hi = min(vals), max(vals)
    hi = hi if hi > lo else lo + 1.0
    for i, (_, s) in enumerate(series.items()):
        c = _COLOURS[i % len(_COLOURS)]
        img[4:10, m + 20 * i : m + 20 * i + 14] = c
        pts = [
            (
                m + (width - 2 * m) * j / max(1, len(s) - 1),
                height - m - (height - 2 * m) * (v - lo) / (hi - lo),
            )
            for j, v in enumerate(s)
            if np.isfinite(v)
        ]
        for a, b in zip(pts, pts[1:], strict=False):
            _line(img, a, b, c)
        if len(pts) == 1:
            _line(img, pts[0], pts[0], c)
    return img
