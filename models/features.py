"""Frozen features for the transferability scores: one pass, eval mode, no gradients."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from .augment import to_float
from .errors import ModelError

HEAD = "head."  # a Backbone's classifier keys in a full state dict: head.weight, head.bias


def source_head(state: Mapping[str, torch.Tensor], width: int) -> nn.Linear | None:
    """The source's own classifier (`head.weight` (classes, width), `head.bias`) out of a state
    dict, as an `nn.Linear` over the trunk's pooled features; None when `state` holds none, or
    a one-output head (a GAN discriminator's real/fake logit: no source classes). ModelError
    when its width is not the trunk's `width` (the head belongs to another backbone)."""
    weight, bias = state.get(HEAD + "weight"), state.get(HEAD + "bias")
    if weight is None or weight.ndim != 2 or weight.shape[0] < 2:
        return None
    classes, fan_in = (int(n) for n in weight.shape)
    if fan_in != width or bias is None or tuple(bias.shape) != (classes,):
        got = None if bias is None else tuple(bias.shape)
        raise ModelError(
            f"source head: weight {tuple(weight.shape)}, bias {got} do not fit a trunk of "
            f"{width} features; store the head of the same backbone"
        )
    head = nn.Linear(fan_in, classes)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return head


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
