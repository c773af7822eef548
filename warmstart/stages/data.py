"""Data stages: ingest a dataset spec into the store (streaming, bounded memory), make the
target's split, load them back (whole in memory when small, else read from the shards the
split's indices touch)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from warmstart.contracts import DatasetRef, Job, SplitPlan, SplitRef
from warmstart.data import (
    ImageDataset,
    Splits,
    load_splits,
    make_splits,
    open_dataset,
    parse_spec,
    store_splits,
)
from warmstart.data.ingest import ingest_source

SPLIT_SEED = 0  # one split for the whole run: every arm and seed sees exactly the same examples


def ingest(spec: str, *, like: DatasetRef | None = None) -> DatasetRef:
    """Load a dataset spec, convert it to ``like``'s geometry if given, store it by content hash."""
    parsed = parse_spec(spec)
    if like is not None:
        changes: dict = {}
        if parsed.size is None:
            changes["size"] = tuple(like.size)
        if parsed.channels is None:
            changes["channels"] = like.channels
        parsed = parsed.with_options(**changes)
    stored = ingest_source(parsed)
    # A class selection is a different task: it gets its own experiment and registered model.
    name = stored.name + ("-" + "-".join(parsed.classes) if parsed.classes else "")
    return DatasetRef(
        hash=stored.hash,
        uri=stored.uri,
        name=name,
        spec=parsed.canonical(),
        num_classes=stored.num_classes,
        channels=stored.channels,
        size=(int(stored.size[0]), int(stored.size[1])),
        count=stored.count,
        classes=tuple(stored.manifest["classes"]),
        uploaded=stored.uploaded,
    )


def make_target_splits(target: DatasetRef, split: SplitPlan, k_shot: int) -> SplitRef:
    """The planned stratified train/val/test split with ``k_shot`` labelled images per class."""
    splits = make_splits(
        open_dataset(target.hash),
        seed=split.seed,
        val_fraction=split.val_fraction,
        test_fraction=split.test_fraction,
        k_shot=k_shot,
    )
    return SplitRef(
        hash=store_splits(splits),
        k_shot=k_shot,
        train=len(splits.train),
        val=len(splits.val),
        test=len(splits.test),
        unlabelled=len(splits.unlabelled),
    )


# The targets and splits this process read last, by content hash (what a hash names never
# changes, and it was checked when read): every stage of a run trains on the same ones.
_LOADED: OrderedDict[tuple[str, str], tuple[ImageDataset, Splits]] = OrderedDict()
_LOADED_MAX = 4
_LOADED_LOCK = threading.Lock()


def load_target(job: Job) -> tuple[ImageDataset, Splits]:
    """The target and its split; ``ds.images[idx]`` reads only the shards ``idx`` touches when
    the target is too large to hold in memory (see ``open_dataset``). Read once per process:
    later stages get the same (checked) objects from memory."""
    key = (job.target.hash, job.split.hash)
    with _LOADED_LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
    loaded = open_dataset(job.target.hash), load_splits(job.split.hash)
    with _LOADED_LOCK:
        _LOADED[key] = loaded
        while len(_LOADED) > _LOADED_MAX:
            _LOADED.popitem(last=False)
    return loaded


def unlabelled_pool(split: SplitRef) -> np.ndarray:
    """Every target training image, labels unused (the k-shot images are unlabelled data too).
    It does not depend on k, so one unsupervised pretraining serves every k and seed."""
    splits = load_splits(split.hash)
    return np.union1d(splits.train, splits.unlabelled)


def index_hash(indices: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:20]
