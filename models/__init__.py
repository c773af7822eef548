"""warmstart models: registries of backbones, pretraining strategies (supervised, gan, autoencoder)
and transfer modes (finetune, linear_probe, lp_ft, freeze=<stage>), the scratch baseline, one epoch
driver for all training, and a device-aware training loop. Pure torch/torchvision/numpy: this
package never imports prefect, mlflow or boto3 (tests/models/test_import_purity.py checks)."""

from . import backbones, modes, strategies  # noqa: F401  (registration)
from .backbones.base import Backbone
from .checkpoint import (
    Checkpoint,
    has_checkpoint,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from .config import (
    ClassifierConfig,
    ConfigBase,
    OptimConfig,
    PretrainConfig,
    RunConfig,
    TrainConfig,
)
from .controls import pixel_logistic_regression
from .device import configure_threads, seed_everything, select_device
from .errors import CheckpointError, ModelError, TrainingError, UnknownNameError
from .freezing import freeze, unfreeze
from .loop import evaluate, extract_features, predict_proba, train_one_epoch
from .modes import Finetune, TransferMode
from .pretrain import PretrainResult, pretrain
from .registry import (
    get_backbone,
    get_transfer_mode,
    list_backbones,
    list_strategies,
    list_transfer_modes,
    register_backbone,
    register_strategy,
    register_transfer_mode,
    strategy_class,
    transfer_mode_class,
)
from .serving import load_model
from .strategies import AutoencoderConfig, GANConfig, Strategy, SupervisedConfig
from .target import TargetRun
from .transfer import FitResult, fit_target, load_trunk

__all__ = [
    "AutoencoderConfig",
    "Backbone",
    "Checkpoint",
    "CheckpointError",
    "ClassifierConfig",
    "ConfigBase",
    "Finetune",
    "FitResult",
    "GANConfig",
    "ModelError",
    "OptimConfig",
    "PretrainConfig",
    "PretrainResult",
    "RunConfig",
    "Strategy",
    "SupervisedConfig",
    "TargetRun",
    "TrainConfig",
    "TrainingError",
    "TransferMode",
    "UnknownNameError",
    "configure_threads",
    "evaluate",
    "extract_features",
    "fit_target",
    "freeze",
    "get_backbone",
    "get_transfer_mode",
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
    "register_transfer_mode",
    "save_checkpoint",
    "seed_everything",
    "select_device",
    "strategy_class",
    "train_one_epoch",
    "transfer_mode_class",
    "unfreeze",
]
