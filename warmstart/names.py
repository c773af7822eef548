"""A light index of the model registries' names, for validation without importing torch.

``PipelineParams`` (and so the contracts and the CLI) reads the backbone, strategy and
transfer-mode names from here. Until the model registries are imported, the names are the ones
warmstart ships (kept equal to the registries by ``tests/unit/test_names.py``); once they are
(a plug-in registered its class, a stage ran), the registries themselves answer, plug-ins
included. A name outside the shipped ones (a ``torchvision:<model>`` backbone, a typo) is asked
of the registries, which then load: that happens while validating, never at start-up.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

BACKBONES = ("convnet-s", "resnet18")
STRATEGIES = ("supervised", "gan", "autoencoder", "simclr")
MODES = ("finetune", "linear_probe", "lp_ft")
FREEZE_TEMPLATE = "freeze=<stage>"
STAGES = {  # per shipped backbone: the stages freeze=<stage> may name
    "convnet-s": ("stage1", "stage2", "stage3"),
    "resnet18": ("stem", "layer1", "layer2", "layer3", "layer4"),
}


def _loaded() -> ModuleType | None:
    """The model registries when something has imported them (then they hold every name)."""
    return (
        sys.modules.get("warmstart.models.registry") if "warmstart.models" in sys.modules else None
    )


def registries() -> ModuleType:
    """The model registries, imported now (torch): for a name the index does not hold."""
    return importlib.import_module("warmstart.models.registry")


def backbones() -> list[str]:
    live = _loaded()
    return live.list_backbones() if live else list(BACKBONES)


def strategies() -> list[str]:
    live = _loaded()
    return live.list_strategies() if live else list(STRATEGIES)


def transfer_modes(backbone: str | None = None) -> list[str]:
    """Every mode's names: concrete for ``backbone`` (``freeze=stage1``, …), else templates."""
    live = _loaded()
    if live is None and backbone is None:
        return [*MODES, FREEZE_TEMPLATE]
    if live is None and backbone in STAGES:
        return [*MODES, *(f"freeze={s}" for s in STAGES[backbone])]
    return (live or registries()).list_transfer_modes(backbone)


def check_backbone(name: str) -> None:
    """``ValueError`` with the registry's message (naming the valid ones) for an unknown
    backbone; a family member such as ``torchvision:<model>`` is resolved by its factory."""
    if _loaded() is None and name in BACKBONES:
        return
    registry = registries()
    try:
        registry.backbone_class(name)
    except registry.ModelError as exc:
        raise ValueError(str(exc)) from None
