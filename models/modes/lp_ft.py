"""`lp_ft`: linear probe, then fine-tune everything (Kumar et al. 2022): the probed head starts
aligned with the pretrained features, so fine-tuning (at lr × lp_ft_lr_scale) distorts them less."""

from __future__ import annotations

from ..config import TrainConfig
from ..freezing import unfreeze
from ..modes.finetune import Finetune
from ..modes.linear_probe import probe_head
from ..registry import register_transfer_mode
from ..target import TargetRun


@register_transfer_mode("lp_ft")
class LPFT(Finetune):
    """A probed head (fresh runs; a resumed run has it in its checkpoint), then finetune."""

    def setup(self, run: TargetRun, fresh: bool) -> None:
        if fresh:
            probe_head(run)
            unfreeze(run.model)

    def peak_lr(self, config: TrainConfig) -> float:
        return config.lr * config.lp_ft_lr_scale
