"""Name -> class registries for backbones, pretraining strategies and transfer modes (torchvision
`_api.py` style). Registering a name twice raises, so two files can never silently shadow each
other; a class registered from outside models/ (a plugin, a test) works everywhere by its name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from .errors import ModelError, UnknownNameError

if TYPE_CHECKING:
    from .backbones.base import Backbone
    from .modes.base import TransferMode
    from .strategies.base import Strategy

T = TypeVar("T")
MAX_SIZE = 1024  # px per side; a backbone may refuse sizes within it (see check_input_size)


class Registry(Generic[T]):
    """Registered classes of one kind, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: dict[str, type[T]] = {}
        self._families: dict[str, Callable[[str], type[T]]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: add the class under `name` (and set its `name` attribute)."""

        def wrap(cls: type[T]) -> type[T]:
            if name in self._table:
                owner = self._table[name].__qualname__
                raise ModelError(f"{self.kind} {name!r} is already registered by {owner}")
            self._table[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return wrap

    def register_family(self, prefix: str, factory: Callable[[str], type[T]]) -> None:
        """Resolve every name `prefix<rest>` with `factory(rest)` (e.g. `torchvision:<model>`):
        a family too large to list, built on first use; `names()` leaves it out."""
        if prefix in self._families:
            raise ModelError(f"{self.kind} family {prefix!r} is already registered")
        self._families[prefix] = factory

    def unregister(self, name: str) -> None:
        """Remove `name` (a plugin or test cleaning up after itself)."""
        if name not in self._table:
            raise UnknownNameError(self.kind, name, self._table)
        del self._table[name]

    def names(self) -> list[str]:
        return list(self._table)

    def classes(self) -> list[type[T]]:
        return list(self._table.values())

    def get_or(self, name: str, refuse: Callable[[UnknownNameError], Exception]) -> type[T]:
        """`get`, raising the caller's own error (one line with the fix) for an unknown name."""
        try:
            return self.get(name)
        except UnknownNameError as exc:
            raise refuse(exc) from None

    def get(self, name: str) -> type[T]:
        """The class registered as `name`; the error lists the valid names."""
        for prefix, factory in self._families.items():
            if name.startswith(prefix) and name not in self._table:
                return factory(name[len(prefix) :])
        if name not in self._table:
            raise UnknownNameError(self.kind, name, self._table)
        return self._table[name]


BACKBONES: Registry[Backbone] = Registry("backbone")
STRATEGIES: Registry[Strategy] = Registry("strategy")
TRANSFER_MODES: Registry[TransferMode] = Registry("transfer mode")


def register_backbone(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a Backbone subclass available as `get_backbone(name, ...)`."""
    return BACKBONES.register(name)  # type: ignore[return-value]


def register_strategy(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a Strategy subclass available as `pretrain(name, ...)`."""
    return STRATEGIES.register(name)  # type: ignore[return-value]


def register_transfer_mode(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a TransferMode subclass available as `fit_target(mode=name, ...)`.
    A parametrised mode (e.g. "freeze") lists its concrete names ("freeze=stage2") in `variants`."""
    if not name or "=" in name:
        raise ModelError(f"transfer mode name {name!r}: use a non-empty name without '='")
    return TRANSFER_MODES.register(name)  # type: ignore[return-value]


def list_backbones() -> list[str]:
    """Registered backbone names, in registration order."""
    return BACKBONES.names()


def list_strategies() -> list[str]:
    """Registered pretraining strategy names, in registration order."""
    return STRATEGIES.names()


def list_transfer_modes(backbone: str | None = None) -> list[str]:
    """Every registered mode's names, in registration order: concrete names for `backbone`
    (e.g. freeze=stage1, freeze=stage2, ...), templates such as "freeze=<stage>" without one."""
    cls = backbone_class(backbone) if backbone is not None else None
    return [v for mode in TRANSFER_MODES.classes() for v in mode.variants(cls)]


def backbone_class(name: str) -> type[Backbone]:
    """The registered class for `name`; the error lists the valid names."""
    return BACKBONES.get(name)


def strategy_class(name: str) -> type[Strategy]:
    """The registered strategy class for `name` (its `needs_labels`, `config_class`)."""
    return STRATEGIES.get(name)


def transfer_mode_class(name: str) -> type[TransferMode]:
    """The registered transfer-mode class for `name` ("freeze", not "freeze=stage2")."""
    return TRANSFER_MODES.get(name)


def get_transfer_mode(mode: str, backbone: str) -> TransferMode:
    """A transfer mode for `backbone` from its full name ("lp_ft", "freeze=stage2"); the error
    lists the valid names for that backbone."""
    valid = list_transfer_modes(backbone)
    if mode not in valid:
        raise UnknownNameError("transfer mode", mode, valid)
    name, _, arg = mode.partition("=")
    return transfer_mode_class(name)(arg or None)


def get_backbone(
    name: str, *, in_channels: int, num_classes: int, image_size: tuple[int, int]
) -> Backbone:
    """Build a randomly initialised backbone with a `num_classes` head (no weights are downloaded)."""
    cls = backbone_class(name)
    if in_channels not in (1, 3):
        raise ModelError(f"in_channels={in_channels} for {name!r}; use 1 (grey) or 3 (RGB)")
    h, w = (int(image_size[0]), int(image_size[1]))
    if not (8 <= h <= MAX_SIZE and 8 <= w <= MAX_SIZE):
        raise ModelError(f"image_size={image_size} for {name!r}; use 8..{MAX_SIZE} px")
    if num_classes < 0:
        raise ModelError(f"num_classes={num_classes}; use >= 1 (or 0 for no head)")
    return cls(in_channels=in_channels, num_classes=num_classes, image_size=(h, w))
