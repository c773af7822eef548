"""``load_source``: one spec string in, one canonical ImageDataset out, with every conversion
(class selection, channels, crop, resize) applied explicitly and recorded in provenance."""

from __future__ import annotations

from warmstart.data.builtins import build_builtin
from warmstart.data.cifar import load_cifar10
from warmstart.data.dataset import ImageDataset
from warmstart.data.imagefolder import load_imagefolder
from warmstart.data.spec import SourceSpec, parse_spec
from warmstart.data.transforms import convert_channels, crop_and_resize, select_classes
from warmstart.errors import DataError


def load_source(
    spec: str | SourceSpec, *, seed: int = 0, skip_corrupt: bool = False, workers: int | None = None
) -> ImageDataset:
    """Read a source (``builtin:``, ``cifar10:``, ``imagefolder:``; local or s3://) into memory.

    ``seed`` drives generated builtins (a ``seed=`` option in the spec wins). ``skip_corrupt``
    (or ``skip_corrupt=true`` in the spec) skips undecodable images and counts them.
    """
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    seed = spec.seed if spec.seed is not None else seed
    skip = skip_corrupt or spec.skip_corrupt
    if spec.kind != "builtin":
        for key in ("n", "num_classes"):
            if getattr(spec, key) is not None:
                raise DataError(
                    f"source spec {spec}: {key}= applies to builtin:shapes and builtin:noise only; "
                    "drop it"
                )
    if spec.kind == "imagefolder":
        ds = load_imagefolder(
            spec.location,
            channels=spec.channels,
            size=spec.size,
            crop=spec.crop,
            classes=spec.classes,
            skip_corrupt=skip,
            workers=workers,
            follow_symlinks=spec.follow_symlinks,
        )
    else:
        ds = build_builtin(spec, seed) if spec.kind == "builtin" else load_cifar10(spec.location)
        generated = spec.kind == "builtin" and spec.location in ("shapes", "noise")
        if spec.classes is not None:
            ds = select_classes(ds, spec.classes)
        if spec.channels is not None:
            ds = convert_channels(ds, spec.channels)
        size = None if generated and spec.crop is None else spec.size  # generators draw at size
        ds = crop_and_resize(ds, size=size, crop=spec.crop)
    if ds.num_classes < 2 or len(set(ds.labels.tolist())) < 2:
        raise DataError(
            f"source {spec} has a single class ({', '.join(ds.classes)}); classification needs at "
            "least two: add class folders or select more classes"
        )
    ds.provenance = source_provenance(spec, seed, ds.provenance, ds.counts(), ds.predefined_test)
    ds.provenance["shape"] = [ds.channels, *ds.size]
    return ds


def source_provenance(
    spec: SourceSpec, seed: int, base: dict, counts: dict[str, int], test: object
) -> dict:
    """What a stored dataset records about where it came from (the spec, options, conversions)."""
    return {
        "spec": spec.canonical(),
        "kind": spec.kind,
        "location": spec.location,
        "options": spec.options(),
        "seed": seed if spec.kind == "builtin" else None,
        **base,
        "conversions": base.get("conversions", []),
        "counts": counts,
        "count": sum(counts.values()),
        "shape": None,
        "predefined_test": None if test is None else int(test.sum()),  # type: ignore[attr-defined]
    }
