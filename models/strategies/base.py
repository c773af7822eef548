"""The pretraining-strategy contract. A strategy owns its modules and optimisers; `pretrain`
(models/pretrain.py) owns seeding, data, checkpoints, resume and divergence checks."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..config import PretrainConfig


class Strategy:
    """Subclasses set `modules`/`optimizers` in __init__ and implement the three methods."""

    name: ClassVar[str] = ""
    needs_labels: ClassVar[bool] = False

    def __init__(
        self,
        *,
        backbone: str,
        in_channels: int,
        image_size: tuple[int, int],
        num_classes: int | None,
        num_images: int,
        config: PretrainConfig,
        device: torch.device,
    ) -> None:
        self.backbone, self.in_channels, self.image_size = backbone, in_channels, image_size
        self.num_classes, self.num_images = num_classes, num_images
        self.config, self.device = config, device
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def train_epoch(
        self, x: torch.Tensor, y: torch.Tensor | None, *, gen: torch.Generator, epoch: int
    ) -> dict[str, float]:
        """One epoch on uint8 images (and labels) on the device; returns metrics incl. "loss"."""
        raise NotImplementedError

    def artifacts(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """H×W×3 uint8 images for the caller to log (sample grid, reconstructions...)."""
        return {}

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The pretrained trunk's weights (no head), loadable into get_backbone(...)."""
        raise NotImplementedError
