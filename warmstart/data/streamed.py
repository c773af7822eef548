"""A stored dataset as a pretraining batch source (``warmstart.models.batches.BatchSource``)
that never holds the whole set: each pass reads the shards in a seeded random order, shuffles
within a window of ``mix`` shards (``warmstart.data.stream``, DataLoader workers), and cuts the
stream into full batches across windows. Memory: ``mix`` shards per worker plus a few batches,
whatever the dataset's size.

Every pass yields every example exactly once (its last batch may be short). An epoch of
``steps`` batches starts a new pass when one ends (tiny sets with a minimum step count). The
order comes from one number drawn from the run's generator when the epoch starts, so a resumed
run continues with the same batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from warmstart.data.dataset import ImageDataset
from warmstart.data.stream import batches as stream_batches

Batch = tuple[torch.Tensor, torch.Tensor | None]


def rebatch(pieces: Iterable[tuple[torch.Tensor, torch.Tensor]], size: int) -> Iterator[Batch]:
    """Batches of exactly ``size`` from pieces of any length, in order (the last may be short)."""
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    held = 0
    for x, y in pieces:
        xs.append(x)
        ys.append(y)
        held += len(x)
        while held >= size:
            x_all, y_all = torch.cat(xs), torch.cat(ys)
            yield x_all[:size], y_all[:size]
            xs, ys, held = [x_all[size:]], [y_all[size:]], held - size
    if held:
        yield torch.cat(xs), torch.cat(ys)


class StreamedBatches:
    """Batches of a shard-backed ``ImageDataset`` (``open_dataset`` above the in-memory limit).
    ``labelled`` False yields label-free batches (y None) and reports no labels. ``extra``
    (label-free only): in-memory images, e.g. the target's unlabelled pool, shuffled and mixed
    into each pass at random positions; ``extra_id`` names them in the fingerprint."""

    def __init__(
        self,
        ds: ImageDataset,
        *,
        labelled: bool,
        workers: int = 2,
        mix: int = 2,
        extra: np.ndarray | None = None,
        extra_id: str = "",
    ) -> None:
        if labelled and extra is not None:
            raise ValueError("extra images carry no labels: use them with labelled=False")
        self.ds, self.workers, self.mix = ds, workers, mix
        self.extra = extra if extra is not None and len(extra) else None
        self.num_examples = len(ds) + (0 if self.extra is None else len(self.extra))
        self.image_shape = tuple(int(v) for v in ds.shape[1:])
        self.labels = ds.labels if labelled else None
        self.fingerprint = f"dataset:{ds.content_hash()}" + (f"+{extra_id}" if extra_id else "")

    def epoch(self, gen: torch.Generator, batch_size: int, steps: int) -> Iterator[Batch]:
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        return self._epoch(seed, min(batch_size, self.num_examples), steps)

    def _epoch(self, seed: int, size: int, steps: int) -> Iterator[Batch]:
        loader = stream_batches(
            self.ds, batch_size=size, seed=seed, workers=self.workers, mix=self.mix
        )
        done, pass_no = 0, 0
        while done < steps:
            getattr(loader, "dataset", loader).set_epoch(pass_no)  # DataLoader or MemoryBatches
            for x, y in rebatch(self._mixed(loader, seed, pass_no, size), size):
                yield x, (y if self.labels is not None else None)
                done += 1
                if done == steps:
                    return
            pass_no += 1

    def _mixed(
        self, loader: Iterable, seed: int, pass_no: int, size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The loader's pieces, with the extra images' shuffled pieces at random positions."""
        if self.extra is None:
            yield from loader
            return
        rng = np.random.default_rng([seed, pass_no, 1])
        order = rng.permutation(len(self.extra))
        extra = [order[i : i + size] for i in range(0, len(order), size)]
        flags = rng.permutation([True] * len(extra) + [False] * len(loader))  # type: ignore[arg-type]
        pieces, extra_no = iter(loader), 0
        for is_extra in flags:
            if is_extra:
                take = extra[extra_no]
                extra_no += 1
                yield torch.from_numpy(self.extra[take]), torch.zeros(len(take), dtype=torch.long)
            else:  # len(loader) may overcount (it counts per shard, windows merge them)
                piece = next(pieces, None)
                if piece is not None:
                    yield piece
        yield from pieces

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """Images at ``indices`` (the extra images follow the dataset's), reading only the
        shards that hold them."""
        idx = np.asarray(indices.cpu(), dtype=np.int64)
        n = len(self.ds)
        out = np.empty((len(idx), *self.image_shape), np.uint8)
        inside = idx < n
        out[inside] = self.ds.images[idx[inside]]
        if self.extra is not None:
            out[~inside] = self.extra[idx[~inside] - n]
        return torch.from_numpy(out)
