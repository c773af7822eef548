"""`pretrain(strategy, ...)`: source pretraining with any registered strategy. The epoch driver
checkpoints, resumes and stops on divergence; this module checks the inputs, builds the strategy
and hands back the trunk weights with the strategy's artifact images."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .batches import ArrayBatches, BatchSource
from .checkpoint import fingerprint
from .config import PretrainConfig, identity_dict
from .data import check_images, to_device
from .device import GLOBAL_RNG
from .driver import EpochCallback, EpochTask, run_epochs, start_run
from .errors import ModelError
from .registry import backbone_class, strategy_class
from .strategies.base import Strategy


@dataclass
class PretrainResult:
    """What pretraining hands to transfer: trunk weights, per-epoch history and images to log."""

    backbone_state: dict[str, torch.Tensor]  # trunk only (CPU), loadable with a new head
    history: list[dict]  # per epoch: epoch, loss (+ strategy metrics), seconds
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)  # name -> H×W×3 uint8
    seconds: float = 0.0  # wall time of this call
    epochs_done: int = 0
    resumed_from: int | None = None  # epoch the run resumed after, None for a fresh run
    images_per_second: float = 0.0  # training images per second of training time
    # the classifier over the source's classes (head.weight, head.bias), when the strategy has one
    head_state: dict[str, torch.Tensor] | None = None


class _StrategyTask(EpochTask):
    """A strategy on its batch source (device-resident arrays, or streamed), as the epoch driver
    sees it."""

    def __init__(self, strategy: Strategy, data: BatchSource, ident: dict) -> None:
        super().__init__(ident)
        self.strategy, self.data = strategy, data
        self.modules, self.optimizers = strategy.modules, strategy.optimizers
        self.label = f"{strategy.name} pretraining"
        cfg = type(strategy.config).__name__
        self.hint = f"lower the strategy's lr: PretrainConfig(strategy={cfg}(lr=...))"

    def train_epoch(self, epoch: int, gen: torch.Generator) -> dict[str, float]:
        return self.strategy.train_batches(self.data, gen=gen, epoch=epoch)


def _labels(
    cls: type[Strategy], labels: np.ndarray | None, num_classes: int | None
) -> tuple[np.ndarray | None, int | None]:
    """The labels and class count the strategy uses: none unless it declares needs_labels."""
    if not cls.needs_labels:
        return None, None
    if labels is None:
        raise ModelError(
            f"strategy {cls.name!r} needs labels; pass labels= or use a label-free one"
        )
    return labels, int(num_classes if num_classes is not None else int(np.max(labels)) + 1)


def _shape_view(data: BatchSource) -> np.ndarray:
    """A uint8 array of `data`'s shape that holds one byte (for the geometry checks)."""
    shape = (data.num_examples, *data.image_shape)
    return np.broadcast_to(np.zeros((1, 1, 1, 1), np.uint8), shape)


def pretrain(
    strategy: str,
    *,
    backbone: str,
    in_channels: int,
    image_size: tuple[int, int],
    images: np.ndarray | BatchSource,
    labels: np.ndarray | None = None,
    num_classes: int | None = None,
    config: PretrainConfig | None = None,
    checkpoint_dir: Path | str | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> PretrainResult:
    """Pretrain `backbone` on uint8 N×C×H×W `images` with `strategy` (one that needs_labels uses
    `labels`; label-free ones ignore them, so the caller may pass source images, the target's
    unlabelled pool, or both). `images` may instead be a `BatchSource` (e.g. shards streamed
    from storage; its own `labels`, and `labels` here is ignored). `config.strategy` None takes
    the strategy's default config. A compatible checkpoint in `checkpoint_dir` is resumed."""
    t_start = time.perf_counter()
    cls = strategy_class(strategy)
    backbone_class(backbone)
    config = cls.resolve(config or PretrainConfig())
    image_size = (int(image_size[0]), int(image_size[1]))
    streamed = isinstance(images, BatchSource)
    labels, num_classes = _labels(cls, images.labels if streamed else labels, num_classes)
    geometry = {"in_channels": in_channels, "image_size": image_size}
    # a source is checked through a zero-stride view of its shape (no pixels are read)
    shaped = _shape_view(images) if streamed else images
    check_images("pretraining", shaped, **geometry, labels=labels, num_classes=num_classes)
    with GLOBAL_RNG:  # seeded and built alone: the same weights beside other stages
        device = start_run(config)
        strat = cls(
            backbone=backbone,
            **geometry,
            num_classes=num_classes,
            num_images=images.num_examples if streamed else len(images),
            config=config,
            device=device,
        )
    data = images if streamed else ArrayBatches(*to_device(images, labels, device))
    ident = {
        "kind": f"pretrain:{strategy}",
        "backbone": backbone,
        "in_channels": in_channels,
        "num_classes": num_classes,
        "image_size": list(image_size),
        "data": images.fingerprint if streamed else fingerprint(images, labels),
        "config": identity_dict(config),
    }
    progress = run_epochs(_StrategyTask(strat, data, ident), config, checkpoint_dir, on_epoch_end)
    return PretrainResult(
        backbone_state=strat.backbone_state(),
        history=progress.history,
        artifacts=strat.artifacts(data),
        seconds=time.perf_counter() - t_start,
        epochs_done=len(progress.history),
        resumed_from=progress.resumed_from,
        images_per_second=progress.images_per_second,
        head_state=strat.head_state(),
    )
