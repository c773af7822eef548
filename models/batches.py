"""Where pretraining batches come from: a `BatchSource` hands out one epoch of (uint8 images,
labels or None) batches at a time, so a strategy never needs the whole source as one array.
`ArrayBatches` is the in-memory source (device-resident tensors, today's exact order); a
streamed source that reads stored shards lives outside models/ and only has to match the
protocol."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from .augment import batch_indices

Batch = tuple[torch.Tensor, torch.Tensor | None]


@runtime_checkable
class BatchSource(Protocol):
    """One epoch of batches at a time. `epoch` draws every random number it needs from `gen`
    when it is called (not lazily), so the caller's later draws and a resumed run's generator
    state do not depend on how far the batches were consumed."""

    num_examples: int
    image_shape: tuple[int, int, int]  # C, H, W
    labels: np.ndarray | None  # int64, one per example (None: label-free)
    fingerprint: str  # identifies the data in checkpoints (resume only on the same data)

    def epoch(self, gen: torch.Generator, batch_size: int, steps: int) -> Iterator[Batch]:
        """`steps` batches of at most min(batch_size, num_examples) images."""
        ...

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 images at `indices` (for artifact grids), on any device."""
        ...


class ArrayBatches:
    """Batches of tensors held whole (on the compute device): consecutive random permutations
    cut into full batches (`batch_indices`), exactly the order pretraining always used."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, fingerprint: str = "") -> None:
        self.x, self.y = x, y
        self.num_examples = len(x)
        self.image_shape = tuple(int(v) for v in x.shape[1:])
        self.labels = None if y is None else y.cpu().numpy()
        self.fingerprint = fingerprint

    def epoch(self, gen: torch.Generator, batch_size: int, steps: int) -> Iterator[Batch]:
        idx = batch_indices(self.num_examples, batch_size, steps, gen).to(self.x.device)
        return self._batches(idx)

    def _batches(self, idx: torch.Tensor) -> Iterator[Batch]:
        for b in idx:
            yield self.x[b], (None if self.y is None else self.y[b])

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        return self.x[indices.to(self.x.device)]
