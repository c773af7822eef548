"""Cheap checks of dataset specs before anything is ingested: the spec parses, names something
that exists, and the target's smallest class has room for ``k_shot`` labelled images.

Nothing is uploaded and nothing goes to a service. Class counts come from the cheapest source
that is exact: a builtin is built in memory (the largest, mnist-5k, takes well under a second),
a local image folder is listed (files counted per class folder, none decoded), and CIFAR-10 has
a fixed layout (5,000 training and 1,000 predefined test images per class). S3 locations are
not counted here (that needs the storage service); the flow's ``make-splits`` step still refuses
a k that does not fit, with the same numbers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from warmstart.data import SourceSpec, list_builtins, load_source, parse_spec
from warmstart.data.imagefolder import list_local
from warmstart.data.transforms import resolve_classes
from warmstart.errors import ConfigError, WarmstartError

CIFAR_CLASSES = 10
CIFAR_TRAIN, CIFAR_TEST = 5000, 1000  # images per class in the training batches / test batch


@dataclass(frozen=True)
class ClassCounts:
    """Per class: images outside any predefined test split, and whether such a split exists."""

    pools: dict[str, int]
    predefined_test: bool
    size: tuple[int, int] | None  # native (H, W) when known without decoding


def parse_flag(flag: str, spec: str) -> SourceSpec:
    """``parse_spec`` with its one-line error prefixed by the flag the user typed."""
    try:
        parsed = parse_spec(spec)
    except WarmstartError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    if parsed.kind == "builtin" and parsed.location not in list_builtins():
        raise ConfigError(
            f"{flag} {spec}: unknown builtin dataset {parsed.location!r}; "
            f"choose from {', '.join(list_builtins())}"
        )
    if parsed.kind != "builtin" and not parsed.is_s3:
        if not Path(parsed.location).expanduser().exists():
            raise ConfigError(
                f"{flag} {spec}: {parsed.location} does not exist; check the path "
                f"(or use s3://bucket/prefix)"
            )
    if parsed.kind != "builtin" and (parsed.n is not None or parsed.num_classes is not None):
        raise ConfigError(
            f"{flag} {spec}: n= and num_classes= apply to builtin:shapes and builtin:noise only; "
            "drop them"
        )
    return parsed


def class_counts(flag: str, spec: SourceSpec) -> ClassCounts | None:
    """Images per class (outside a predefined test split), or None where counting needs S3."""
    try:
        if spec.kind == "builtin":
            ds = load_source(spec)
            test = ds.predefined_test
            pools = Counter(
                ds.classes[int(c)] for i, c in enumerate(ds.labels) if test is None or not test[i]
            )
            return ClassCounts(dict(pools), test is not None and bool(test.any()), ds.size)
        if spec.is_s3:
            return None
        if spec.kind == "cifar10":
            names = [str(i) for i in range(CIFAR_CLASSES)]
            picked = (
                resolve_classes(spec.classes, names, where=str(spec)) if spec.classes else range(10)
            )
            return ClassCounts({names[i]: CIFAR_TRAIN for i in picked}, True, (32, 32))
        items = list_local(spec.location, follow_symlinks=spec.follow_symlinks)
    except WarmstartError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    return _folder_counts(flag, spec, items)


def _folder_counts(flag: str, spec: SourceSpec, items: list) -> ClassCounts:
    names = sorted({it.class_name for it in items})
    if spec.classes:
        try:
            names = [names[i] for i in resolve_classes(spec.classes, names, where=str(spec))]
        except WarmstartError as exc:
            raise ConfigError(f"{flag}: {exc}") from None
    pools = Counter(it.class_name for it in items if not it.test and it.class_name in names)
    predefined = any(it.test for it in items if it.class_name in names)
    return ClassCounts({n: pools.get(n, 0) for n in names}, predefined, None)


def training_pool(n: int, *, val_fraction: float, test_fraction: float, predefined: bool) -> int:
    """Images of one class left for training after val/test, as ``make_splits`` allocates them."""
    want_test, want_val = not predefined and test_fraction > 0, val_fraction > 0
    n_test = max(1, int(round(test_fraction * n))) if want_test else 0
    n_val = max(1, int(round(val_fraction * n))) if want_val else 0
    while n_test + n_val > n - 1:
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return max(n - n_test - n_val, 0)
