"""`supervised`: cross-entropy on the source labels (deep transfer's classic pretraining)."""

from __future__ import annotations

import numpy as np
import torch

from ..config import default_pad
from ..device import memory_format
from ..loop import Augment, lr_factor, steps_per_epoch, train_one_epoch
from ..registry import get_backbone, register_strategy
from ..strategies.base import Strategy


@register_strategy("supervised")
class Supervised(Strategy):
    """The backbone with a source-class head, AdamW + one-cycle, random-crop augmentation."""

    needs_labels = True

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        c = self.config
        self.model = get_backbone(
            self.backbone,
            in_channels=self.in_channels,
            num_classes=int(self.num_classes or 0),
            image_size=self.image_size,
        )
        self.model.to(self.device, memory_format=memory_format(self.device))
        self.opt = torch.optim.AdamW(
            [{"params": self.model.parameters(), "peak_lr": c.lr}],
            lr=c.lr,
            weight_decay=c.weight_decay,
        )
        self.modules, self.optimizers = {"model": self.model}, {"opt": self.opt}
        self.steps = steps_per_epoch(self.num_images, c.batch_size, c.min_steps_per_epoch)
        self.aug = Augment(
            pad=c.pad if c.pad is not None else default_pad(self.image_size), hflip=c.hflip
        )

    def train_epoch(self, x, y, *, gen, epoch) -> dict[str, float]:
        c, total = self.config, self.steps * self.config.epochs
        m = train_one_epoch(
            self.model,
            x,
            y,
            optimizer=self.opt,
            gen=gen,
            steps=self.steps,
            batch_size=c.batch_size,
            augment=self.aug,
            lr_at=lambda s: lr_factor(s, total, c.schedule, c.warmup_frac),
            step0=(epoch - 1) * self.steps,
            label_smoothing=c.label_smoothing,
        )
        return {
            "loss": m["train_loss"],
            "acc": m["train_acc"],
            "lr": m["lr"],
            "images": m["images"],
        }

    def artifacts(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        return {}

    def backbone_state(self) -> dict[str, torch.Tensor]:
        return self.model.trunk_state_dict()
