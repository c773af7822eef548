"""Training input: batches of (uint8 N×C×H×W images, int64 labels) for ``torch.utils.data``.

``batches(ds, ...)`` decides by size: a dataset held in memory (``open_dataset`` keeps those up
to ``WARMSTART_IN_MEMORY_BYTES``) is batched from its array; a shard-backed one streams through
a ``DataLoader`` whose workers each read whole shards (from the bounded local cache, or S3 with
its sha256 checked), shuffle within a window of ``mix`` shards and yield ready batches. Shard
order and the shuffle are seeded by (seed, epoch): the same call gives the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from warmstart import storage
from warmstart.data.dataset import ImageDataset
from warmstart.data.shards import ShardCache, ShardedImages, ShardIndex, fetch_shard

Batch = tuple[torch.Tensor, torch.Tensor]


def _plan(index: ShardIndex, indices: np.ndarray | None) -> list[tuple[int, np.ndarray]]:
    """(shard, rows within it) for every shard holding a selected index, in shard order."""
    n = index.shape[0]
    idx = np.arange(n) if indices is None else np.unique(np.asarray(indices, dtype=np.int64))
    which = idx // index.rows
    bounds = np.searchsorted(which, np.arange(len(index.keys) + 1))
    return [
        (s, idx[bounds[s] : bounds[s + 1]] - s * index.rows)
        for s in range(len(index.keys))
        if bounds[s + 1] > bounds[s]
    ]


@dataclass
class ShardStream(IterableDataset):
    """Batches streamed shard by shard; with DataLoader workers each takes every k-th shard."""

    index: ShardIndex
    labels: np.ndarray
    indices: np.ndarray | None = None
    batch_size: int = 256
    shuffle: bool = True
    seed: int = 0
    mix: int = 2  # shards shuffled together (memory: mix × shard bytes per worker)
    epoch: int = 0
    cache_root: str | None = None

    def __post_init__(self) -> None:
        super().__init__()
        self.plan = _plan(self.index, self.indices)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(-(-len(rows) // self.batch_size) for _, rows in self.plan)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.plan)) if self.shuffle else np.arange(len(self.plan))
        if info is not None:
            order = order[info.id :: info.num_workers]
            rng = np.random.default_rng([self.seed, self.epoch, info.id])
        cache = ShardCache(self.cache_root)
        for start in range(0, len(order), self.mix):
            xs, ys = [], []
            for k in order[start : start + self.mix]:
                shard, rows = self.plan[k]
                xs.append(fetch_shard(self.index, shard, cache)[rows])
                ys.append(self.labels[shard * self.index.rows + rows])
            yield from _window_batches(xs, ys, self.batch_size, rng if self.shuffle else None)


def _window_batches(
    xs: list[np.ndarray], ys: list[np.ndarray], bs: int, rng: np.random.Generator | None
) -> Iterator[Batch]:
    x, y = np.concatenate(xs), np.concatenate(ys)
    perm = rng.permutation(len(y)) if rng is not None else np.arange(len(y))
    for i in range(0, len(y), bs):
        take = perm[i : i + bs]
        yield torch.from_numpy(x[take]), torch.from_numpy(y[take].astype(np.int64))


@dataclass
class MemoryBatches:
    """The in-memory path: shuffled batches of an array already in memory."""

    images: np.ndarray
    labels: np.ndarray
    batch_size: int = 256
    shuffle: bool = True
    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        x = torch.from_numpy(self.images)
        y = torch.from_numpy(np.asarray(self.labels, dtype=np.int64))
        n = len(y)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = torch.from_numpy(rng.permutation(n)) if self.shuffle else torch.arange(n)
        for i in range(0, n, self.batch_size):
            take = order[i : i + self.batch_size]
            yield x[take], y[take]


def _worker_init(_: int) -> None:
    storage.reset_clients()  # a forked worker opens its own S3 connections


def batches(
    ds: ImageDataset,
    *,
    indices: np.ndarray | None = None,
    batch_size: int = 256,
    shuffle: bool = True,
    seed: int = 0,
    workers: int = 2,
    mix: int = 2,
) -> MemoryBatches | DataLoader:
    """An iterable of (uint8 images, int64 labels) batches over ``ds`` (or its ``indices``),
    re-iterable once per epoch (call ``set_epoch`` on it, or on ``loader.dataset``, to reshuffle).
    In memory when ``ds`` is; otherwise a DataLoader streaming its shards with ``workers``
    processes and pinned memory when CUDA is present."""
    if ds.in_memory:
        images = ds.images if indices is None else ds.images[np.asarray(indices)]
        labels = ds.labels if indices is None else ds.labels[np.asarray(indices)]
        return MemoryBatches(images, labels, batch_size, shuffle, seed)
    assert isinstance(ds.images, ShardedImages)
    stream = ShardStream(
        ds.images.index,
        ds.labels,
        indices,
        batch_size,
        shuffle,
        seed,
        mix,
        cache_root=str(ds.images.cache.root) if ds.images.cache else None,
    )
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=2 if workers else None,
        multiprocessing_context="fork" if workers else None,
    )
