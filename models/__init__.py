"""warmstart models: backbones, pretraining strategies (supervised, gan, autoencoder), transfer
modes, the scratch baseline and a device-aware training loop. Pure torch/torchvision/numpy: this
package never imports prefect, mlflow or boto3 (tests/models/test_import_purity.py checks)."""

from . import backbones, strategies  # noqa: F401  (registration)
from .backbones.base import Backbone
from .checkpoint import (
    Checkpoint,
    has_checkpoint,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from .config import PretrainConfig, TrainConfig
from .controls import pixel_logistic_regression
from .device import configure_threads, seed_everything, select_device
from .errors import CheckpointError, ModelError, TrainingError, UnknownNameError
from .freezing import freeze, unfreeze
from .loop import evaluate, extract_features, predict_proba, train_one_epoch
from .pretrain import PretrainResult, pretrain
from .registry import (
    get_backbone,
    list_backbones,
    list_strategies,
    register_backbone,
    register_strategy,
)
from .serving import load_model
from .transfer import FitResult, fit_target, list_transfer_modes, load_trunk

__all__ = [
    "Backbone",
    "Checkpoint",
    "CheckpointError",
    "FitResult",
    "ModelError",
    "PretrainConfig",
    "PretrainResult",
    "TrainConfig",
    "TrainingError",
    "UnknownNameError",
    "configure_threads",
    "evaluate",
    "extract_features",
    "fit_target",
    "freeze",
    "get_backbone",
    "has_checkpoint",
    "list_backbones",
    "list_strategies",
    "list_transfer_modes",
    "load_checkpoint",
    "load_model",
    "load_trunk",
    "pixel_logistic_regression",
    "predict_proba",
    "pretrain",
    "read_meta",
    "register_backbone",
    "register_strategy",
    "save_checkpoint",
    "seed_everything",
    "select_device",
    "train_one_epoch",
    "unfreeze",
]
