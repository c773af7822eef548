"""`TargetRun`: one fit_target run as the epoch driver sees it — the model, its data on the device,
the config and transfer mode, the probe rows and the best-on-validation weights. Transfer modes
read and prepare it (models/modes/); the driver checkpoints and resumes it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .backbones.base import Backbone
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .driver import EpochTask
from .errors import ModelError
from .loop import steps_per_epoch

if TYPE_CHECKING:
    from .modes.base import TransferMode

Batch = tuple[torch.Tensor, torch.Tensor]


class TargetRun(EpochTask):
    """State shared by the mode and the driver (`ident` as fit_target builds it, incl. "mode");
    `prepare` runs the mode's setup, then builds its optimisers (frozen parameters are left out
    of them)."""

    hint = "lower TrainConfig.lr"

    def __init__(
        self,
        *,
        model: Backbone,
        mode: TransferMode,
        train: Batch,
        val: Batch,
        config: TrainConfig,
        num_classes: int,
        pretrained: bool,
        ident: dict[str, Any],
    ) -> None:
        super().__init__(ident)
        self.model, self.mode, self.config = model, mode, config
        self.train, self.val = train, val
        self.num_classes, self.pretrained = num_classes, pretrained
        self.pad = config.crop_pad(model.image_size)
        self.steps = steps_per_epoch(len(train[0]), config.batch_size, config.min_steps_per_epoch)
        self.modules = {"": model}
        self.probe_history: list[dict] = []
        self.best_epoch, self.best_key = 0, (-1.0, -math.inf)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.label = f"target training in mode {ident['mode']!r} (lr {config.lr:g})"

    def prepare(self, fresh: bool) -> None:
        self.mode.setup(self, fresh)
        self.optimizers = self.mode.optimizers(self)

    def train_epoch(self, epoch: int, gen: torch.Generator) -> dict[str, float]:
        return self.mode.train_epoch(self, epoch, gen)

    def epoch_row(self, epoch: int, metrics: dict[str, float]) -> dict[str, float]:
        row = self.mode.epoch_row(self, metrics)
        key = (row["val_acc"], -row["val_loss"])
        if key > self.best_key:
            self.best_key, self.best_epoch = key, epoch
            self.best_state = {
                k: t.detach().cpu().clone() for k, t in self.model.state_dict().items()
            }
        return row

    def keep(self) -> list[int]:
        return [self.best_epoch]

    def meta(self, epoch: int) -> dict[str, Any]:
        return {
            "probe_history": self.probe_history,
            "best_epoch": self.best_epoch,
            "best_val_acc": self.best_key[0],
            "best_val_loss": -self.best_key[1],
            **self.mode.meta(self, epoch),
        }

    def restore(self, meta: Mapping[str, Any], directory: Path) -> None:
        self.probe_history = list(meta.get("probe_history", []))
        self.best_epoch = meta["best_epoch"]
        self.best_key = (meta["best_val_acc"], -meta["best_val_loss"])
        self.best_state = load_checkpoint(directory, epoch=self.best_epoch).weights

    def best_model(self) -> Backbone:
        """The model with the best epoch's weights, on CPU in eval mode."""
        if self.best_state is None:
            raise ModelError("no training epoch ran; set TrainConfig.epochs >= 1")
        self.model.load_state_dict(self.best_state)
        return self.model.cpu().eval()
