"""`supervised`: cross-entropy on the source labels (deep transfer's classic pretraining)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ClassifierConfig
from ..loop import classifier_epoch
from ..registry import register_strategy
from ..strategies.base import Strategy


@dataclass(frozen=True)
class SupervisedConfig(ClassifierConfig):
    """AdamW + one-cycle on source cross-entropy with random-crop augmentation (the defaults of
    ClassifierConfig: lr 3e-3, weight decay 5e-4, warm-up 15%, pad by image size, no flips)."""


@register_strategy("supervised")
class Supervised(Strategy):
    """The backbone with a source-class head, AdamW + one-cycle, random-crop augmentation."""

    needs_labels = True
    config_class = SupervisedConfig

    def build(self) -> None:
        self.model = self.build_backbone(int(self.num_classes or 0))
        self.train_together(model=self.model)
        self.pad = self.config.crop_pad(self.image_size)

    def train_batches(self, data, *, gen, epoch) -> dict[str, float]:
        m = classifier_epoch(
            self.model,
            data,
            None,
            optimizer=self.opt,
            gen=gen,
            epoch=epoch,
            steps=self.steps,
            total_steps=self.total_steps,
            batch_size=self.run.batch_size,
            config=self.config,
            pad=self.pad,
            device=self.device,
        )
        return {
            "loss": m["train_loss"],
            "acc": m["train_acc"],
            "lr": m["lr"],
            "images": m["images"],
        }

    def backbone_state(self) -> dict[str, torch.Tensor]:
        return self.model.trunk_state_dict()

    def head_state(self) -> dict[str, torch.Tensor]:
        return {
            f"head.{k}": v.detach().cpu().clone() for k, v in self.model.head.state_dict().items()
        }
