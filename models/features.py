"""Frozen features for the transferability scores: one pass, eval mode, no gradients."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .augment import to_float


def _device(module: nn.Module) -> torch.device:
    first = next(module.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@torch.inference_mode()
def extract(
    backbone: nn.Module,
    images: torch.Tensor,
    *,
    head: nn.Module | None = None,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pooled features (N, D) float32 of uint8 or [0, 1] float images (N, C, H, W), and the
    softmax (N, classes) of `head` over them when one is given (a source's own classifier).

    A `Backbone` gives its `forward_features`; any other module its output, flattened. Both
    modules run in eval mode (BatchNorm on its running statistics) and get their mode back."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; use >= 1")
    modules = [m for m in (backbone, head) if m is not None]
    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()
    device = _device(backbone)
    forward = getattr(backbone, "forward_features", backbone)
    feats, probs = [], []
    try:
        for i in range(0, len(images), batch_size):
            xb = to_float(images[i : i + batch_size].to(device))
            f = forward(xb).flatten(1).float()
            feats.append(f.cpu())
            if head is not None:
                probs.append(torch.softmax(head(f).float(), dim=1).cpu())
    finally:
        for m, mode in zip(modules, was_training, strict=True):
            m.train(mode)
    width = getattr(backbone, "num_features", 0)
    features = torch.cat(feats).numpy() if feats else np.zeros((0, width), np.float32)
    softmax = torch.cat(probs).numpy() if probs else None
    if head is not None and softmax is None:
        softmax = np.zeros((0, 0), np.float32)
    return features, softmax
