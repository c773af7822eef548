"""Freezing as a named function (`freeze(model, upto="stage2")`), not an inline loop."""

from __future__ import annotations

from .backbones.base import Backbone
from .errors import UnknownNameError


def freeze(model: Backbone, upto: str | None = None) -> list[str]:
    """Freeze the trunk stages up to and including `upto` (None: the whole trunk, head trainable):
    parameters get requires_grad=False and their BatchNorm layers stay in eval mode during
    training, so neither weights nor running statistics change. Returns the frozen stage names."""
    names = [n for n, _ in model.stages()]
    if upto is None:
        upto = names[-1]
    if upto not in names:
        raise UnknownNameError(f"stage of {model.name}", upto, names)
    frozen = names[: names.index(upto) + 1]
    for name, stage in model.stages():
        if name in frozen:
            for p in stage.parameters():
                p.requires_grad_(False)
    model.frozen_upto = upto
    model.train(model.training)
    return frozen


def unfreeze(model: Backbone) -> None:
    """Make every parameter trainable again and let all BatchNorm layers follow train()."""
    for p in model.parameters():
        p.requires_grad_(True)
    model.frozen_upto = None
    model.train(model.training)
