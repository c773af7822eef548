"""Artifact images as H×W×3 uint8 arrays (the caller logs them): image grids (loss
curves are plotted from the history by the caller).
Pure numpy/torchvision, so models/ needs no plotting library."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.utils import make_grid


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
