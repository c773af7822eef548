"""`linear_probe`: the whole trunk frozen; the head is a logistic regression fitted in closed
form on cached (augmented, standardised) trunk features, its L2 chosen on validation — one
"epoch". With init_state=None it is the random-init control."""

from __future__ import annotations

import torch

from ..config import TrainConfig
from ..freezing import freeze
from ..modes.base import TransferMode
from ..probe import ProbeResult, fit_probe
from ..registry import register_transfer_mode
from ..target import TargetRun


def probe_head(run: TargetRun) -> ProbeResult:
    """Freeze run.model, fit the probe on its features and install the probed head."""
    cfg = run.config
    freeze(run.model)
    pr = fit_probe(
        run.model,
        run.train,
        run.val,
        num_classes=run.num_classes,
        views=cfg.probe_views,
        pad=run.pad,
        hflip=cfg.hflip,
        weight_decays=cfg.probe_weight_decays,
        max_iter=cfg.probe_max_iter,
        gen=torch.Generator().manual_seed(cfg.seed + 1),
        batch_size=cfg.eval_batch_size,
    )
    run.model.head = pr.head
    run.probe_history = pr.history
    return pr


@register_transfer_mode("linear_probe")
class LinearProbe(TransferMode):
    """Frozen trunk, probed head: one epoch whose row is the chosen L2 value's."""

    def epochs(self, config: TrainConfig) -> int:
        return 1

    def setup(self, run: TargetRun, fresh: bool) -> None:
        freeze(run.model)

    def train_epoch(self, run: TargetRun, epoch: int, gen: torch.Generator) -> dict[str, float]:
        pr = probe_head(run)
        best = {k: v for k, v in pr.history[pr.best_index].items() if k not in ("epoch", "seconds")}
        return {**best, "images": pr.images_featurised}
