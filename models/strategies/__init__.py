"""Pretraining strategies; importing this package registers them in this order."""

# isort: off
from ..strategies import supervised  # noqa: F401  (registration, listed first)
from ..strategies import gan  # noqa: F401
from ..strategies import autoencoder  # noqa: F401
from ..strategies import simclr  # noqa: F401

# isort: on
from ..strategies.autoencoder import AutoencoderConfig
from ..strategies.base import Strategy
from ..strategies.gan import GANConfig
from ..strategies.simclr import SimCLRConfig
from ..strategies.supervised import SupervisedConfig

__all__ = ["AutoencoderConfig", "GANConfig", "SimCLRConfig", "Strategy", "SupervisedConfig"]
