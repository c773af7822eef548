"""Pretraining strategies; importing this package registers them in this order."""

# isort: off
from models.strategies import supervised  # noqa: F401  (registration, listed first)
from models.strategies import gan  # noqa: F401
from models.strategies import autoencoder  # noqa: F401

# isort: on
from models.strategies.base import Strategy

__all__ = ["Strategy"]
