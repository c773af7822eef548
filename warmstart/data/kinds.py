"""Dataset kinds: the part before the colon of a dataset spec (``builtin:``, ``cifar10:``,
``imagefolder:``), each a class registered with ``@register_dataset_kind("<name>")`` in the same
generic ``Registry`` as backbones, strategies and transfer modes.

A kind says how its specs are checked before anything is ingested (``check``), how many images
each class has without a service (``counts``; None: counted by the split), and how a spec loads
into one in-memory ``ImageDataset`` (``load``). The spec parser, the checks before ingestion,
``load_source`` and ``ingest`` read nothing else, so adding a format is one file with one
decorator (imported before the flow runs, or from ``warmstart/data/formats.py`` to ship it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from warmstart.errors import DataError
from warmstart.models.registry import Registry

if TYPE_CHECKING:
    from warmstart.data.dataset import ImageDataset
    from warmstart.data.spec import SourceSpec


@dataclass(frozen=True)
class ClassCounts:
    """Per class: images outside any predefined test split, and whether such a split exists."""

    pools: dict[str, int]
    predefined_test: bool
    size: tuple[int, int] | None  # native (H, W) when known without decoding


class DatasetKind:
    """Base class of a dataset kind. Subclass it, register it; ``load`` is all it must say.

    ``named``: the location names a dataset (matched case-insensitively), not a path or S3.
    ``generated``: it accepts ``n=`` and ``num_classes=`` (generated data).
    ``streams``: ``ingest`` lists and decodes it image by image (the ImageFolder layout) in
    bounded memory, rather than loading it whole and storing it.
    """

    name: ClassVar[str] = ""
    named: ClassVar[bool] = False
    generated: ClassVar[bool] = False
    streams: ClassVar[bool] = False
    example: ClassVar[str] = "<path>"  # how the location is written, for the parser's advice

    def check(self, spec: SourceSpec) -> None:
        """Refuse a spec that cannot be read (``DataError``: the problem and the fix), before
        anything is ingested and without a service: by default a local path must exist."""
        if not spec.is_s3 and not Path(spec.location).expanduser().exists():
            raise DataError(
                f"{spec.location} does not exist; check the path (or use s3://bucket/prefix)"
            )

    def counts(self, spec: SourceSpec) -> ClassCounts | None:
        """Images per class without a service, or None: the split counts them (and refuses a
        k that does not fit, with the same numbers)."""
        return None

    def load(
        self, spec: SourceSpec, *, seed: int, skip_corrupt: bool, workers: int | None
    ) -> ImageDataset:
        """The dataset ``spec`` names, with the spec's conversions applied."""
        raise NotImplementedError


DATASET_KINDS: Registry[DatasetKind] = Registry("dataset kind")


def register_dataset_kind(name: str) -> Callable[[type[DatasetKind]], type[DatasetKind]]:
    """Class decorator: make ``<name>:<location>`` specs load through the class."""
    return DATASET_KINDS.register(name)


def list_dataset_kinds() -> list[str]:
    return DATASET_KINDS.names()


def dataset_kind(name: str) -> DatasetKind:
    """The registered kind ``name``; a ``DataError`` naming the registered ones otherwise."""

    def refuse(_) -> DataError:
        return DataError(f"unknown source kind {name!r}: use {kind_choices()}")

    return DATASET_KINDS.get_or(name, refuse)()


def kind_choices(example: bool = False) -> str:
    """``builtin:, cifar10: or imagefolder:`` (with ``example``: ``builtin:<name>, …``)."""
    names = [
        f"{n}:{DATASET_KINDS.get(n).example}" if example else f"{n}:" for n in DATASET_KINDS.names()
    ]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
