"""Rebuild a trained target model from a fit_target checkpoint directory (no unpickling)."""

from __future__ import annotations

from pathlib import Path

from .backbones.base import Backbone
from .checkpoint import load_checkpoint
from .errors import CheckpointError
from .registry import get_backbone


def load_model(directory: Path | str, *, which: str = "best") -> Backbone:
    """The `which` ("best" or "latest") model of a fit_target checkpoint, on CPU in eval mode."""
    ck = load_checkpoint(directory, which=which)
    m = ck.meta
    if m.get("kind") != "fit_target":
        raise CheckpointError(
            f"{directory} holds a {m.get('kind')!r} checkpoint, not a fit_target model"
        )
    model = get_backbone(
        m["backbone"],
        in_channels=m["in_channels"],
        num_classes=m["num_classes"],
        image_size=tuple(m["image_size"]),
    )
    model.load_state_dict(ck.weights)
    return model.eval()
