"""The transfer-mode contract: how a target model is trained from a (pretrained or random) init.
A mode prepares the model (freezing, a probed head) before its optimisers are built, then says
what one epoch does and which numbers it reports; `fit_target` and the epoch driver do the rest
(seeding, data, best-on-validation selection, checkpoints, resume, divergence stop)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..config import TrainConfig

if TYPE_CHECKING:
    from ..backbones.base import Backbone
    from ..target import TargetRun


class TransferMode:
    """Subclasses implement `train_epoch` (and `epoch_row` unless it validates); a mode registered with
    `@register_transfer_mode(name)` is usable as `fit_target(mode=name, ...)`. A parametrised mode
    ("freeze=stage2") gets the text after "=" as `arg` and lists its names in `variants`."""

    name: ClassVar[str] = ""

    def __init__(self, arg: str | None = None) -> None:
        self.arg = arg

    @classmethod
    def variants(cls, backbone: type[Backbone] | None) -> list[str]:
        """The mode names this class accepts for `backbone` (None: templates for any backbone)."""
        return [cls.name]

    def epochs(self, config: TrainConfig) -> int:
        """How many epochs the driver runs."""
        return config.epochs

    def setup(self, run: TargetRun, fresh: bool) -> None:
        """Prepare run.model before the optimisers are built (freeze stages; on a `fresh` run,
        not a resumed one, fit a probe head). Default: nothing."""

    def optimizers(self, run: TargetRun) -> dict[str, torch.optim.Optimizer]:
        """The optimisers, by checkpoint name. Default: none (e.g. a closed-form head)."""
        return {}

    def train_epoch(self, run: TargetRun, epoch: int, gen: torch.Generator) -> dict[str, float]:
        """One epoch; returns metrics ("train_loss" is checked for divergence, "images" counted)."""
        raise NotImplementedError

    def epoch_row(self, run: TargetRun, metrics: dict[str, float]) -> dict[str, float]:
        """The epoch's history row; it must hold "val_acc" and "val_loss" (best-epoch choice).
        Default: the metrics as they are (a train_epoch that validated itself)."""
        return metrics

    def meta(self, run: TargetRun, epoch: int) -> dict[str, Any]:
        """Extra (informational) checkpoint metadata."""
        return {}
