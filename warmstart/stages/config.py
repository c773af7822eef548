"""What every training stage derives from the run's parameters, whichever provider or arm it
trains: the device, the config fields that key a stage (runtime-only ones left out), and which
data a pretraining strategy reads. Neutral ground: the pretraining provider, target training,
the leakage check and the confirmation step import it, none of them each other."""

from __future__ import annotations

import torch

from warmstart.models.config import RUNTIME_FIELDS
from warmstart.models.device import stage_threads
from warmstart.models.registry import strategy_class
from warmstart.params import PipelineParams


def device(params: PipelineParams) -> str | None:
    return None if params.device == "auto" else params.device


def threads(params: PipelineParams) -> int | None:
    """Intra-op threads of one training stage. On a CPU-only run: the machine's cores over the
    stages it trains at once (``models.device.stage_threads``; the same count for every stage,
    as ``torch.set_num_threads`` is process-wide). None (torch's default) when a GPU trains."""
    dev = device(params)
    if dev not in (None, "cpu") or (dev is None and torch.cuda.is_available()):
        return None
    return stage_threads()


def config_dict(cfg) -> dict:
    """What a stage computes from (runtime-only fields such as device and threads excluded)."""
    return {k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_FIELDS}


def data_needs(strategy: str, params: PipelineParams) -> tuple[bool, bool]:
    """(uses the source, uses the target pool), from the strategy's declared needs."""
    labelled = strategy_class(strategy).needs_labels
    uses_target = not labelled and params.unsupervised_data in ("target_pool", "both")
    uses_source = labelled or params.unsupervised_data in ("source", "both")
    return uses_source, uses_target
