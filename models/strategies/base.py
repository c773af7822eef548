"""The pretraining-strategy contract. A strategy declares what it needs (`needs_labels`) and its own
hyper-parameters (`config_class`, a frozen dataclass), and owns its modules and optimisers;
`pretrain` (models/pretrain.py) and the epoch driver own seeding, data, checkpoints, resume and
divergence checks."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..backbones.base import Backbone
from ..config import ConfigBase, PretrainConfig
from ..device import memory_format
from ..errors import ModelError
from ..loop import steps_per_epoch
from ..registry import get_backbone


class Strategy:
    """Subclasses build their modules and optimisers in `build` (called last by __init__) and
    implement `train_epoch` and `backbone_state`. `self.run` is the PretrainConfig (budget,
    seed), `self.config` the strategy's own config (an instance of `config_class`)."""

    name: ClassVar[str] = ""
    needs_labels: ClassVar[bool] = False  # True: pretrain() refuses to run without labels
    config_class: ClassVar[type[ConfigBase]] = ConfigBase  # the strategy's hyper-parameters

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
        self.run = self.resolve(config)
        self.config = self.run.strategy
        self.device = device
        self.steps = steps_per_epoch(num_images, config.batch_size, config.min_steps_per_epoch)
        self.total_steps = self.steps * config.epochs
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.build()

    def build(self) -> None:
        """Create the networks on self.device and their optimisers; fill `modules` and
        `optimizers` (checkpointed by name)."""
        raise NotImplementedError

    def build_backbone(self, num_classes: int) -> Backbone:
        """A fresh `self.backbone` with a `num_classes` head, on the device."""
        model = get_backbone(
            self.backbone,
            in_channels=self.in_channels,
            num_classes=num_classes,
            image_size=self.image_size,
        )
        return model.to(self.device, memory_format=memory_format(self.device))

    @classmethod
    def resolve(cls, config: PretrainConfig) -> PretrainConfig:
        """`config` with its `strategy` set: the given one (checked) or this class's defaults."""
        if config.strategy is None:
            return config.with_strategy(cls.config_class())
        if not isinstance(config.strategy, cls.config_class):
            raise ModelError(
                f"PretrainConfig.strategy is a {type(config.strategy).__name__} but strategy "
                f"{cls.name!r} takes {cls.config_class.__name__}; pass that or leave it None"
            )
        return config

    def train_epoch(
        self, x: torch.Tensor, y: torch.Tensor | None, *, gen: torch.Generator, epoch: int
    ) -> dict[str, float]:
        """One epoch on uint8 images (and labels) on the device; returns metrics incl. "loss"
        (and "images", the count processed)."""
        raise NotImplementedError

    def artifacts(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """H×W×3 uint8 images for the caller to log (sample grid, reconstructions...)."""
        return {}

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The pretrained trunk's weights (no head), loadable into get_backbone(...)."""
        raise NotImplementedError
