"""`finetune`: train the whole model with discriminative learning rates — the head at `lr`, a
pretrained trunk at lr × backbone_lr_scale (a random trunk, i.e. scratch, at `lr`) — with AdamW,
the one-cycle schedule and random-crop augmentation; validate after every epoch."""

from __future__ import annotations

from typing import Any

import torch

from ..backbones.base import Backbone
from ..config import TrainConfig
from ..loop import classifier_epoch, evaluate
from ..modes.base import TransferMode
from ..registry import register_transfer_mode
from ..target import TargetRun


def discriminative_adamw(
    model: Backbone, lr: float, trunk_lr: float, weight_decay: float
) -> torch.optim.AdamW:
    """AdamW with a "head" group at `lr` and a "trunk" group at `trunk_lr` (trainable params only;
    no trunk group when the trunk is frozen). `peak_lr` drives the schedule."""
    trunk = [
        p for n, p in model.named_parameters() if not n.startswith("head.") and p.requires_grad
    ]
    head = [p for p in model.head.parameters() if p.requires_grad]
    groups = [{"params": head, "lr": lr, "peak_lr": lr, "name": "head"}]
    if trunk:
        groups.append({"params": trunk, "lr": trunk_lr, "peak_lr": trunk_lr, "name": "trunk"})
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


@register_transfer_mode("finetune")
class Finetune(TransferMode):
    """Every trainable parameter, discriminative LRs, cross-entropy epochs."""

    def peak_lr(self, config: TrainConfig) -> float:
        """The head's peak learning rate."""
        return config.lr

    def optimizers(self, run: TargetRun) -> dict[str, torch.optim.Optimizer]:
        cfg = run.config
        lr = self.peak_lr(cfg)
        # A random trunk has nothing to preserve: scratch trains it at the head's rate.
        trunk_lr = lr * (cfg.backbone_lr_scale if run.pretrained else 1.0)
        return {"optim": discriminative_adamw(run.model, lr, trunk_lr, cfg.weight_decay)}

    def train_epoch(self, run: TargetRun, epoch: int, gen: torch.Generator) -> dict[str, float]:
        return classifier_epoch(
            run.model,
            *run.train,
            optimizer=run.optimizers["optim"],
            gen=gen,
            epoch=epoch,
            steps=run.steps,
            total_steps=run.steps * run.config.epochs,
            batch_size=run.config.batch_size,
            config=run.config,
            pad=run.pad,
        )

    def epoch_row(self, run: TargetRun, metrics: dict[str, float]) -> dict[str, float]:
        v = evaluate(run.model, *run.val, batch_size=run.config.eval_batch_size)
        return {
            "train_loss": metrics["train_loss"],
            "train_acc": metrics["train_acc"],
            "val_loss": v["loss"],
            "val_acc": v["acc"],
            "lr": metrics["lr"],
        }

    def meta(self, run: TargetRun, epoch: int) -> dict[str, Any]:
        steps = run.steps
        total = steps * run.config.epochs
        return {
            "scheduler": {"step": epoch * steps, "total_steps": total, "steps_per_epoch": steps}
        }
