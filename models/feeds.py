"""Feeding one training epoch: batch s on the compute device, uint8 → float, crop/flip
augmented, in the device's memory format — from arrays (`Feed`, indexed by a drawn order) or from
a `BatchSource` (`SourceFeed`, e.g. shards streamed from storage)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .augment import apply_augment, draw_augment, to_float
from .batches import BatchSource
from .device import memory_format
from .errors import ModelError


@dataclass
class Augment:
    """What train_one_epoch does to each batch."""

    pad: int = 0  # random-crop padding in px (0: no shift)
    hflip: bool = False  # random horizontal flips


def to_device_async(t: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    """`t` on `device`; host data bound for CUDA goes through pinned memory, without blocking."""
    t = torch.as_tensor(t)
    if device.type == "cuda" and t.device.type == "cpu":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


class Augmenting:
    """The per-image crop/flip draws of one epoch (`shape` = (steps, b), drawn from `gen` when
    built) and their application to batch s on the compute `device`: uint8 → float, augmented,
    in the device's memory format. `sync_free` (default: any device but the CPU) moves the draws
    to the device once per epoch and flips without testing on the host whether a batch has any
    (that test would sync). A batch shorter than b uses the first draws of its row."""

    def __init__(
        self,
        shape: tuple[int, int],
        device: torch.device,
        augment: Augment,
        gen: torch.Generator,
        sync_free: bool | None = None,
    ) -> None:
        self.device, self.augment = device, augment
        self.sync_free = device.type != "cpu" if sync_free is None else sync_free
        draws = draw_augment(shape, augment.pad, augment.hflip, gen)
        if self.sync_free:
            draws = tuple(to_device_async(t, device) for t in draws)
        self.oy, self.ox, self.flip = draws
        self.no_flip = torch.zeros(shape[1], dtype=torch.bool)
        self.mf = memory_format(device)

    def augmented(self, xb: torch.Tensor, s: int) -> torch.Tensor:
        a, n = self.augment, len(xb)
        oy, ox, flip = self.oy[s][:n], self.ox[s][:n], self.flip[s][:n]
        if self.sync_free:
            xb = apply_augment(to_float(xb), a.pad, oy, ox, self.no_flip[:n])
            if a.hflip:
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        else:
            xb = apply_augment(to_float(xb), a.pad, oy, ox, flip)
        return xb.contiguous(memory_format=self.mf)


class Feed(Augmenting):
    """Batch s of an epoch over arrays, augmented on the compute `device`. Data on the device is
    indexed there. Host data (`host`: x is not on `device`) is gathered into pinned memory and
    copied with non_blocking, one batch ahead (`prefetch`)."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        device: torch.device,
        augment: Augment,
        gen: torch.Generator,
        *,
        host: bool | None = None,
        sync_free: bool | None = None,
        pin: bool | None = None,
    ) -> None:
        self.x, self.y = x, y
        self.host = x.device != device if host is None else host
        self.pin = device.type == "cuda" if pin is None else pin
        self.idx = idx if self.host else to_device_async(idx, device)
        super().__init__(tuple(idx.shape), device, augment, gen, sync_free)
        self.ahead: tuple[int, tuple[torch.Tensor, torch.Tensor]] | None = None

    def _copy(self, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.idx[s]
        out = []
        for t in (self.x, self.y):
            buf = torch.empty((len(b), *t.shape[1:]), dtype=t.dtype, pin_memory=self.pin)
            torch.index_select(t, 0, b, out=buf)
            out.append(buf.to(self.device, non_blocking=True))
        return out[0], out[1]

    def raw(self, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch s as stored (uint8 images, labels) on the device (host data: the copy that
        `prefetch(s)` started, else a copy made now)."""
        if not self.host:
            b = self.idx[s]
            return self.x[b], self.y[b]
        ahead, self.ahead = self.ahead, None
        return ahead[1] if ahead is not None and ahead[0] == s else self._copy(s)

    def prefetch(self, s: int) -> None:
        """Host data: gather batch s and start its copy now (called once step s - 1 is queued
        on the device, so the gather overlaps the device's work). No-op otherwise."""
        if self.host and s < len(self.idx):
            self.ahead = (s, self._copy(s))

    def batch(self, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = self.raw(s)
        return self.augmented(xb, s), yb


class SourceFeed(Augmenting):
    """Batch s of an epoch from a BatchSource (labelled): the source draws its order from `gen`
    first, then the augmentation draws follow, as for arrays. Host batches (a streamed source)
    are copied to the device without blocking."""

    def __init__(
        self,
        data: BatchSource,
        steps: int,
        batch_size: int,
        device: torch.device,
        augment: Augment,
        gen: torch.Generator,
    ) -> None:
        self.batches = data.epoch(gen, batch_size, steps)
        shape = (steps, min(batch_size, data.num_examples))
        super().__init__(shape, device, augment, gen)

    def batch(self, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = next(self.batches)
        if yb is None:
            raise ModelError("a classifier epoch needs labelled batches; the source has none")
        xb, yb = to_device_async(xb, self.device), to_device_async(yb, self.device)
        return self.augmented(xb, s), yb

    def prefetch(self, s: int) -> None:
        """No-op: a streamed source prefetches in its own workers."""
