"""Checks on the arrays handed to models/: uint8 N×C×H×W images and int labels in range."""

from __future__ import annotations

import numpy as np
import torch

from .errors import ModelError


def check_images(
    name: str,
    images: np.ndarray,
    *,
    in_channels: int,
    image_size: tuple[int, int],
    labels: np.ndarray | None = None,
    num_classes: int | None = None,
) -> None:
    """ModelError naming `name` and the fix when the arrays do not match the run's settings."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        got = (
            f"{type(images).__name__} {getattr(images, 'dtype', '')} {getattr(images, 'shape', '')}"
        )
        raise ModelError(f"{name} images must be a uint8 numpy array N×C×H×W; got {got.strip()}")
    if len(images) == 0:
        raise ModelError(f"{name} has no images; pass at least one")
    if images.shape[1] != in_channels:
        raise ModelError(
            f"{name} images have {images.shape[1]} channels but in_channels={in_channels}; "
            "convert the images or pass the matching in_channels"
        )
    if tuple(images.shape[2:]) != tuple(image_size):
        raise ModelError(
            f"{name} images are {tuple(images.shape[2:])} px but image_size={tuple(image_size)}; "
            "resize the images or pass the matching image_size"
        )
    if labels is None:
        return
    labels = np.asarray(labels)
    if (
        labels.ndim != 1
        or len(labels) != len(images)
        or not np.issubdtype(labels.dtype, np.integer)
    ):
        raise ModelError(
            f"{name} labels must be 1-D integers, one per image; got {labels.dtype} {labels.shape} "
            f"for {len(images)} images"
        )
    if num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
        raise ModelError(
            f"{name} labels span {labels.min()}..{labels.max()} but num_classes={num_classes}; "
            "pass labels in 0..num_classes-1"
        )


def to_device(
    images: np.ndarray, labels: np.ndarray | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 images and int64 labels as tensors on `device` (kept there for the whole run)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    y = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
    return x, y
