"""Name -> class registries for backbones and pretraining strategies (torchvision `_api.py` style).

Registering a name twice raises, so two files can never silently shadow each other."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .errors import ModelError, UnknownNameError

if TYPE_CHECKING:
    from .backbones.base import Backbone
    from .strategies.base import Strategy

T = TypeVar("T")

_BACKBONES: dict[str, type[Backbone]] = {}
_STRATEGIES: dict[str, type[Strategy]] = {}


def _register(table: dict[str, type], kind: str, name: str) -> Callable[[type[T]], type[T]]:
    def wrap(cls: type[T]) -> type[T]:
        if name in table:
            raise ModelError(f"{kind} {name!r} is already registered by {table[name].__qualname__}")
        table[name] = cls
        cls.name = name  # type: ignore[attr-defined]
        return cls

    return wrap


def register_backbone(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a Backbone subclass available as `get_backbone(name, ...)`."""
    return _register(_BACKBONES, "backbone", name)


def register_strategy(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a Strategy subclass available as `pretrain(name, ...)`."""
    return _register(_STRATEGIES, "strategy", name)


def list_backbones() -> list[str]:
    """Registered backbone names, in registration order."""
    return list(_BACKBONES)


def list_strategies() -> list[str]:
    """Registered pretraining strategy names, in registration order."""
    return list(_STRATEGIES)


def backbone_class(name: str) -> type[Backbone]:
    """The registered class for `name`; the error lists the valid names."""
    if name not in _BACKBONES:
        raise UnknownNameError("backbone", name, _BACKBONES)
    return _BACKBONES[name]


def strategy_class(name: str) -> type[Strategy]:
    """The registered strategy class for `name`; the error lists the valid names."""
    if name not in _STRATEGIES:
        raise UnknownNameError("strategy", name, _STRATEGIES)
    return _STRATEGIES[name]


def get_backbone(
    name: str, *, in_channels: int, num_classes: int, image_size: tuple[int, int]
) -> Backbone:
    """Build a randomly initialised backbone with a `num_classes` head (no weights are downloaded)."""
    cls = backbone_class(name)
    if in_channels not in (1, 3):
        raise ModelError(f"in_channels={in_channels} for {name!r}; use 1 (grey) or 3 (RGB)")
    h, w = (int(image_size[0]), int(image_size[1]))
    if not (8 <= h <= 64 and 8 <= w <= 64):
        raise ModelError(f"image_size={image_size} for {name!r}; supported sizes are 8..64 px")
    if num_classes < 0:
        raise ModelError(f"num_classes={num_classes}; use >= 1 (or 0 for no head)")
    return cls(in_channels=in_channels, num_classes=num_classes, image_size=(h, w))
