"""The pipeline's stages as plain functions over the typed contracts (``warmstart.contracts``).

Prefect tasks (``warmstart.tasks``) wrap them; tests call them directly. Every training stage is
keyed by the hashes of its inputs and stored in S3, so a rerun reuses finished work and resumes
unfinished work from its last epoch checkpoint.
"""

from warmstart.stages import (  # noqa: F401  (register the source providers)
    pretrain,
    sources_checkpoint,
    sources_registered,
    sources_torchvision,
)
from warmstart.stages.data import ingest, load_target, make_target_splits
from warmstart.stages.evaluate import evaluate
from warmstart.stages.sources import (
    SourceProvider,
    get_source_provider,
    list_source_providers,
    provider_for,
    provider_of,
    register_source_provider,
)
from warmstart.stages.training import arm_specs, finetune_target, load_arm_model
from warmstart.stages.validate import make_plan

__all__ = [
    "SourceProvider",
    "arm_specs",
    "evaluate",
    "finetune_target",
    "get_source_provider",
    "ingest",
    "list_source_providers",
    "load_arm_model",
    "load_target",
    "make_plan",
    "make_target_splits",
    "provider_for",
    "provider_of",
    "register_source_provider",
]
