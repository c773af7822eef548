"""Streaming ingestion: a source spec into the sharded store without holding the dataset in
memory. ImageFolder trees are listed, then fetched and decoded in chunks straight into spool
shards; other sources (builtins, CIFAR-10: small by nature) are loaded then stored. Both give
the same content hash as ``store_dataset(load_source(spec))``."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from warmstart.data.decode import GRAY_MODES, Decoder
from warmstart.data.imagefolder import (
    Item,
    conversion_records,
    display_name,
    drop_empty,
    list_local,
    list_s3,
    read_sources,
    refuse_undecodable,
    select_items,
    stack_error,
)
from warmstart.data.sources import load_source, source_provenance
from warmstart.data.spec import SourceSpec, parse_spec
from warmstart.data.store import DatasetRef, store_dataset, store_parts
from warmstart.data.writer import ShardWriter, remove_spool, spool_dir
from warmstart.errors import DataError

log = logging.getLogger(__name__)
CHUNK = 1024  # images fetched and decoded per step (bounds memory with the shard buffer)


def ingest_source(
    spec: str | SourceSpec, *, seed: int = 0, workers: int | None = None
) -> DatasetRef:
    """Store a source by content hash; ImageFolder trees stream (bounded memory)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind != "imagefolder":
        return store_dataset(load_source(spec, seed=seed, workers=workers))
    return ingest_imagefolder(spec, workers=workers)


@dataclass
class _Tally:
    """What streaming decoding keeps per image: label, test flag, source mode (not pixels)."""

    labels: list[int] = field(default_factory=list)
    test: list[bool] = field(default_factory=list)
    modes: Counter = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    first: tuple[tuple[int, ...], str] | None = None  # the first image's shape and file


def _decode_chunk(
    chunk: list[Item], decode: Decoder, spec: SourceSpec, index: dict[str, int], tally: _Tally
) -> np.ndarray | None:
    """Decode one chunk; the kept images as one array (None when all were skipped)."""
    kept = []
    for item, (arr, info) in zip(chunk, decode(read_sources(chunk, spec.location)), strict=True):
        if arr is None:
            if not spec.skip_corrupt or info.startswith("too large"):
                raise refuse_undecodable(item, info, spec.location)
            tally.bad.append(item.name)
            continue
        if tally.first is None:
            tally.first = (arr.shape, item.name)
        elif arr.shape != tally.first[0]:
            raise stack_error(spec.location, tally.first[0], arr.shape, item.name)
        kept.append(arr)
        tally.labels.append(index[item.class_name])
        tally.test.append(item.test)
        tally.modes[info] += 1
    return np.stack(kept) if kept else None


def _list(spec: SourceSpec) -> tuple[list[Item], list[str], list[dict], list[str]]:
    loc = spec.location
    items = (
        list_s3(loc)
        if loc.startswith("s3://")
        else list_local(loc, follow_symlinks=spec.follow_symlinks)
    )
    if not items:
        raise DataError(
            f"imagefolder {loc} has no class sub-folders with images: put images in "
            f"{loc}/<class>/ (one folder per class)"
        )
    items, names, conversions = select_items(items, spec.classes, loc)
    items, empty = drop_empty(items, loc, spec.skip_corrupt)
    return items, names, conversions, empty


def ingest_imagefolder(spec: SourceSpec, *, workers: int | None = None) -> DatasetRef:
    """List, then fetch + decode ``CHUNK`` images at a time into spool shards; hash; publish."""
    items, names, conversions, empty = _list(spec)
    index = {c: i for i, c in enumerate(names)}
    tally = _Tally(bad=list(empty))
    spool = spool_dir()
    try:
        writer = ShardWriter(spool)
        opts = {"channels": spec.channels, "size": spec.size, "crop": spec.crop}
        with Decoder(len(items), workers, **opts) as decode:
            for start in range(0, len(items), CHUNK):
                images = _decode_chunk(items[start : start + CHUNK], decode, spec, index, tally)
                if images is not None:
                    writer.add(images)
        if not tally.labels:
            raise DataError(f"imagefolder {spec.location}: no decodable images; check the files")
        gray = spec.channels is None and all(m in GRAY_MODES for m in tally.modes)
        writer.close(first_channel=gray)
        return _publish(spec, writer, names, conversions, tally, len(items) + len(empty))
    finally:
        remove_spool(spool)


def _publish(
    spec: SourceSpec, writer: ShardWriter, names: list[str], conversions, tally: _Tally, files: int
) -> DatasetRef:
    labels = np.asarray(tally.labels, dtype=np.int64)
    test = np.asarray(tally.test, dtype=bool)
    test = test if test.any() else None
    if tally.bad:
        log.warning(
            "imagefolder %s: skipped %d corrupt image(s), first: %s",
            spec.location,
            len(tally.bad),
            tally.bad[0],
        )
    digest, parts = writer.hash_parts(labels, names, test)
    geometry = writer.geometry or ()
    base = {
        "origin": "imagefolder",
        "files": files,
        "modes": dict(tally.modes),
        "skipped_corrupt": len(tally.bad),
        "skipped_files": tally.bad[:20],
        "conversions": conversions
        + conversion_records(tally.modes, geometry[0], spec.channels, spec.size, spec.crop),
    }
    counts = np.bincount(labels, minlength=len(names))
    prov = source_provenance(
        spec, 0, base, {c: int(k) for c, k in zip(names, counts, strict=True)}, test
    )
    prov["shape"] = list(geometry)
    meta = {"name": display_name(spec.location), "provenance": prov, "classes": names}
    meta["shape"] = (len(labels), *geometry)
    return store_parts(digest, parts, meta, labels, test)
