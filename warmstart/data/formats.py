"""The dataset kinds that ship: ``builtin:<name>`` (generated or bundled sets),
``cifar10:<path|s3://…>`` (the python pickle batches, read safely) and
``imagefolder:<path|s3://…>`` (one folder per class, optional train/test split folders).
Each is one ``DatasetKind`` registered by name (``warmstart/data/kinds.py``)."""

from __future__ import annotations

from collections import Counter

from warmstart.data.builtins import build_builtin, list_builtins
from warmstart.data.cifar import load_cifar10
from warmstart.data.dataset import ImageDataset
from warmstart.data.imagefolder import list_local, load_imagefolder
from warmstart.data.kinds import ClassCounts, DatasetKind, register_dataset_kind
from warmstart.data.spec import SourceSpec
from warmstart.data.transforms import (
    convert_channels,
    crop_and_resize,
    resolve_classes,
    select_classes,
)
from warmstart.errors import DataError

GENERATORS = ("shapes", "noise")  # builtins drawn at the requested size (no resize after)
CIFAR_CLASSES = 10
CIFAR_TRAIN, CIFAR_TEST = 5000, 1000  # images per class in the training batches / test batch


def convert(ds: ImageDataset, spec: SourceSpec, *, drawn_at_size: bool = False) -> ImageDataset:
    """The spec's class selection, channels, crop and size, applied to a loaded dataset."""
    if spec.classes is not None:
        ds = select_classes(ds, spec.classes)
    if spec.channels is not None:
        ds = convert_channels(ds, spec.channels)
    size = None if drawn_at_size and spec.crop is None else spec.size
    return crop_and_resize(ds, size=size, crop=spec.crop)


@register_dataset_kind("builtin")
class Builtin(DatasetKind):
    """Generated or bundled sets by name (``warmstart.data.builtins``)."""

    named = True
    generated = True
    example = "<name>"

    def check(self, spec: SourceSpec) -> None:
        if spec.location not in list_builtins():
            raise DataError(
                f"unknown builtin dataset {spec.location!r}; "
                f"choose from {', '.join(list_builtins())}"
            )

    def counts(self, spec: SourceSpec) -> ClassCounts:
        """Built in memory: the largest, mnist-5k, takes well under a second."""
        seed = spec.seed if spec.seed is not None else 0
        ds = self.load(spec, seed=seed, skip_corrupt=False, workers=None)
        test = ds.predefined_test
        pools = Counter(
            ds.classes[int(c)] for i, c in enumerate(ds.labels) if test is None or not test[i]
        )
        return ClassCounts(dict(pools), test is not None and bool(test.any()), ds.size)

    def load(self, spec, *, seed, skip_corrupt, workers) -> ImageDataset:
        return convert(build_builtin(spec, seed), spec, drawn_at_size=spec.location in GENERATORS)


@register_dataset_kind("cifar10")
class Cifar10(DatasetKind):
    """CIFAR-10's python batches (a tar or its folder), unpickled with a restricted loader."""

    def counts(self, spec: SourceSpec) -> ClassCounts | None:
        """A fixed layout: 5,000 training and 1,000 predefined test images per class."""
        if spec.is_s3:
            return None
        names = [str(i) for i in range(CIFAR_CLASSES)]
        picked = (
            resolve_classes(spec.classes, names, where=str(spec)) if spec.classes else range(10)
        )
        return ClassCounts({names[i]: CIFAR_TRAIN for i in picked}, True, (32, 32))

    def load(self, spec, *, seed, skip_corrupt, workers) -> ImageDataset:
        return convert(load_cifar10(spec.location), spec)


@register_dataset_kind("imagefolder")
class ImageFolder(DatasetKind):
    """One folder per class (optionally under train/ and test/), local or on S3; decoded image
    by image, class selection before decoding and conversions during it."""

    streams = True

    def counts(self, spec: SourceSpec) -> ClassCounts | None:
        """A local tree is listed (files counted per class folder, none decoded)."""
        if spec.is_s3:
            return None
        items = list_local(spec.location, follow_symlinks=spec.follow_symlinks)
        names = sorted({it.class_name for it in items})
        if spec.classes:
            names = [names[i] for i in resolve_classes(spec.classes, names, where=str(spec))]
        pools = Counter(it.class_name for it in items if not it.test and it.class_name in names)
        predefined = any(it.test for it in items if it.class_name in names)
        return ClassCounts({n: pools.get(n, 0) for n in names}, predefined, None)

    def load(self, spec, *, seed, skip_corrupt, workers) -> ImageDataset:
        return load_imagefolder(
            spec.location,
            channels=spec.channels,
            size=spec.size,
            crop=spec.crop,
            classes=spec.classes,
            skip_corrupt=skip_corrupt,
            workers=workers,
            follow_symlinks=spec.follow_symlinks,
        )
