"""`freeze=<stage>`: the trunk stages up to and including <stage> frozen (weights and BatchNorm
statistics), the rest fine-tuned as `finetune` does. One mode per backbone stage."""

from __future__ import annotations

from ..backbones.base import Backbone
from ..freezing import freeze
from ..modes.finetune import Finetune
from ..registry import register_transfer_mode
from ..target import TargetRun


@register_transfer_mode("freeze")
class Freeze(Finetune):
    """Partial freezing; `arg` is the last frozen stage."""

    @classmethod
    def variants(cls, backbone: type[Backbone] | None) -> list[str]:
        if backbone is None:
            return [f"{cls.name}=<stage>"]
        return [f"{cls.name}={s}" for s in backbone.stage_names]

    def setup(self, run: TargetRun, fresh: bool) -> None:
        freeze(run.model, self.arg)
