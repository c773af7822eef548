"""The pretraining-strategy contract. A strategy declares what it needs (`needs_labels`) and its own
hyper-parameters (`config_class`, a frozen dataclass), and owns its modules and optimisers;
`pretrain` (models/pretrain.py) and the epoch driver own seeding, data, checkpoints, resume and
divergence checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..augment import to_float
from ..backbones.base import Backbone
from ..batches import ArrayBatches, BatchSource
from ..config import ConfigBase, PretrainConfig
from ..device import memory_format
from ..errors import ModelError
from ..loop import adamw, lr_factor, steps_per_epoch
from ..registry import get_backbone


class Strategy:
    """Subclasses build their modules and optimisers in `build` (called last by __init__) and
    implement `train_batches` (or `train_epoch`, which sees the source as whole arrays) and
    `backbone_state`. `self.run` is the PretrainConfig (budget, seed), `self.config` the
    strategy's own config (an instance of `config_class`)."""

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

    def train_together(self, **modules: nn.Module) -> None:
        """Train `modules` with one AdamW on the config's lr and weight decay (`self.opt`);
        both are checkpointed by name."""
        self.modules = modules
        self.opt = adamw([p for m in modules.values() for p in m.parameters()], self.config)
        self.optimizers = {"opt": self.opt}

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

    def train_batches(
        self, data: BatchSource, *, gen: torch.Generator, epoch: int
    ) -> dict[str, float]:
        """One epoch over `data`'s batches (`data.epoch(gen, batch_size, self.steps)`); returns
        metrics incl. "loss" (and "images", the count processed). The default hands arrays to
        `train_epoch`, so a strategy written for arrays runs on any source held in memory."""
        if not isinstance(data, ArrayBatches):
            raise ModelError(
                f"strategy {self.name!r} implements train_epoch (whole arrays) only, and this "
                "source is streamed: implement train_batches, or raise WARMSTART_IN_MEMORY_BYTES "
                "above the source's size to hold it in memory"
            )
        return self.train_epoch(data.x, data.y, gen=gen, epoch=epoch)

    def train_epoch(
        self, x: torch.Tensor, y: torch.Tensor | None, *, gen: torch.Generator, epoch: int
    ) -> dict[str, float]:
        """One epoch on uint8 images (and labels) on the device; returns metrics incl. "loss"
        (and "images", the count processed)."""
        raise NotImplementedError

    def optimise_epoch(
        self,
        data: BatchSource,
        loss_of: Callable[[torch.Tensor], torch.Tensor],
        *,
        gen: torch.Generator,
        epoch: int,
    ) -> dict[str, float]:
        """One epoch of `self.opt` steps on `loss_of(float [0, 1] batch on the device)`, the lr
        following the config's schedule (`lr`, `schedule`, `warmup_frac`) over the whole run."""
        c, dev = self.config, self.device
        batches = data.epoch(gen, self.run.batch_size, self.steps)
        for module in self.modules.values():
            module.train()
        loss_sum = torch.zeros((), device=dev)
        lr, n = c.lr, 0
        for s, (xb, _) in enumerate(batches):
            lr = c.lr * lr_factor(
                (epoch - 1) * self.steps + s, self.total_steps, c.schedule, c.warmup_frac
            )
            self.opt.param_groups[0]["lr"] = lr
            loss = loss_of(to_float(xb.to(dev, non_blocking=True)))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            loss_sum += loss.detach()
            n += len(xb)
        return {"loss": float(loss_sum) / self.steps, "lr": lr, "images": n}

    def artifacts(self, data: BatchSource) -> dict[str, np.ndarray]:
        """H×W×3 uint8 images for the caller to log (sample grid, reconstructions...)."""
        return {}

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The pretrained trunk's weights (no head), loadable into get_backbone(...)."""
        raise NotImplementedError

    def head_state(self) -> dict[str, torch.Tensor] | None:
        """The classifier over the source's classes (`head.weight`, `head.bias`, CPU) where the
        strategy trains one (supervised); None for label-free strategies."""
        return None
