"""Cheap checks of dataset specs before anything is ingested: the spec parses, names something
that exists, and the target's smallest class has room for ``k_shot`` labelled images.

Nothing is uploaded and nothing goes to a service. Class counts come from the cheapest source
that is exact, as each dataset kind says (``DatasetKind.counts``, ``warmstart/data/formats.py``):
a builtin is built in memory, a local image folder is listed (none decoded), and CIFAR-10 has a
fixed layout. S3 locations are not counted here (that needs the storage service); the flow's
``make-splits`` step still refuses a k that does not fit, with the same numbers.
"""

from __future__ import annotations

from warmstart.data import SourceSpec, parse_spec
from warmstart.data.kinds import ClassCounts, dataset_kind
from warmstart.data.splits import held_out
from warmstart.errors import ConfigError, WarmstartError

__all__ = ["ClassCounts", "class_counts", "parse_flag", "training_pool"]


def parse_flag(flag: str, spec: str) -> SourceSpec:
    """``parse_spec`` and the kind's own ``check``, their one-line error prefixed by the flag
    the user typed."""
    try:
        parsed = parse_spec(spec)
    except WarmstartError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    kind = dataset_kind(parsed.kind)
    try:
        kind.check(parsed)
    except WarmstartError as exc:
        raise ConfigError(f"{flag} {spec}: {exc}") from None
    if not kind.generated and (parsed.n is not None or parsed.num_classes is not None):
        raise ConfigError(
            f"{flag} {spec}: n= and num_classes= apply to builtin:shapes and builtin:noise only; "
            "drop them"
        )
    return parsed


def class_counts(flag: str, spec: SourceSpec) -> ClassCounts | None:
    """Images per class (outside a predefined test split), or None where the kind cannot count
    them without a service (the split then refuses a k that does not fit)."""
    try:
        return dataset_kind(spec.kind).counts(spec)
    except WarmstartError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def training_pool(n: int, *, val_fraction: float, test_fraction: float, predefined: bool) -> int:
    """Images of one class left for training after val/test, as ``make_splits`` allocates them."""
    n_test, n_val = held_out(n, val_fraction, test_fraction, predefined)
    return max(n - n_test - n_val, 0)
