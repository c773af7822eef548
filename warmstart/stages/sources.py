"""Source providers: the seam where a source spec becomes a ``SourceModel``.

A provider is registered by name (``@register_source_provider``) and says which specs it takes.
Specs that no other provider claims are dataset specs, resolved by ``pretrain``: pretrain a
backbone on the dataset with each requested strategy. The flow does not care which one ran: it
gets ``SourceModel``s (weights + architecture + input spec + provenance) and builds arms on them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from warmstart import safepath
from warmstart.contracts import DatasetRef, Job, SourceModel
from warmstart.errors import ConfigError
from warmstart.params import PipelineParams
from warmstart.stages.weights import Report, no_report

DEFAULT_PROVIDER = "pretrain"
LEARNED_FILE = "learned.json"  # in a stage's folder: the data its weights learned from
CHECKPOINT = "source checkpoint's "  # how the leakage report names that data, as a source


@dataclass(frozen=True)
class LearnedFrom:
    """Data that a source's weights already learned from, by content hash: the leakage guard
    checks it against the run's validation and test images like a source dataset."""

    what: str  # how the report names it, e.g. "source model's labels"
    dataset_hash: str
    split_hash: str | None = None  # its labelled part: this split's train and validation


def write_learned(stage_dir: Path, seen: list[LearnedFrom]) -> Path:
    """``learned.json`` in a stage folder: what the stage's weights learned from (its own data
    and its source's), so that a ``checkpoint:`` source made of it can be checked for leakage."""
    path = stage_dir / LEARNED_FILE
    path.write_text(json.dumps([asdict(s) for s in dict.fromkeys(seen)], indent=1))
    return path


def read_learned(raw: bytes) -> list[LearnedFrom]:
    """The records of a ``learned.json``; [] when it is not one."""
    try:
        items = json.loads(raw)
        seen = [
            LearnedFrom(str(i["what"]), str(i["dataset_hash"]), i.get("split_hash")) for i in items
        ]
    except (ValueError, TypeError, KeyError):
        return []
    for s in seen:  # the hashes name objects in the bucket (the leakage guard reads them)
        safepath.hex_digest(s.dataset_hash, "dataset_hash", LEARNED_FILE)
        if s.split_hash is not None:
            safepath.hex_digest(s.split_hash, "split_hash", LEARNED_FILE)
    return seen


class SourceProvider:
    """Base class of a source provider. Subclass it, set ``name``, register it.

    ``needs_dataset``: the flow ingests ``params.source`` as a dataset (converted to the target's
    geometry) and passes it to ``resolve``. ``labels`` names one SourceModel per label (the arms
    ``<label>/<mode>`` are built on it). ``resolve`` may train (it runs as a ``gpu`` task).
    """

    name: ClassVar[str] = ""
    needs_dataset: ClassVar[bool] = False

    @classmethod
    def accepts(cls, spec: str) -> bool:
        return spec.startswith(f"{cls.name}:")

    def labels(self, params: PipelineParams) -> list[str]:
        return [self.name]

    def validate(self, params: PipelineParams) -> None:
        """Refuse bad parameters before anything is ingested or trained (one line, the fix)."""

    def pin(self, params: PipelineParams) -> PipelineParams:
        """``params`` with the source named so that it cannot change during the run (e.g. an
        alias replaced by the version it names now), after the checks that need to read it;
        every stage of the run then reads the pinned spec."""
        return params

    def learned_from(self, params: PipelineParams) -> list[LearnedFrom]:
        """Stored data the source's weights were trained on (the leakage guard checks it);
        a dataset source is checked as the ingested dataset itself."""
        return []

    def resolve(
        self, label: str, dataset: DatasetRef | None, job: Job, report: Report = no_report
    ) -> SourceModel:
        raise NotImplementedError


_PROVIDERS: dict[str, type[SourceProvider]] = {}


def register_source_provider(name: str) -> Callable[[type[SourceProvider]], type[SourceProvider]]:
    """Class decorator: register a provider under ``name``; a duplicate name is refused."""

    def wrap(cls: type[SourceProvider]) -> type[SourceProvider]:
        if name in _PROVIDERS:
            raise ValueError(f"source provider {name!r} is already registered")
        cls.name = name
        _PROVIDERS[name] = cls
        return cls

    return wrap


def unregister_source_provider(name: str) -> None:
    _PROVIDERS.pop(name, None)


def list_source_providers() -> list[str]:
    return list(_PROVIDERS)


def get_source_provider(name: str) -> SourceProvider:
    try:
        return _PROVIDERS[name]()
    except KeyError:
        raise ConfigError(
            f"unknown source provider {name!r}: choose from {', '.join(_PROVIDERS)}"
        ) from None


def provider_for(spec: str) -> SourceProvider:
    """The provider that claims ``spec``; dataset specs fall to the ``pretrain`` provider."""
    for name, cls in _PROVIDERS.items():
        if name != DEFAULT_PROVIDER and cls.accepts(spec):
            return cls()
    return get_source_provider(DEFAULT_PROVIDER)
