"""Backbones; importing this package registers them (one file per backbone)."""

from models.backbones import convnet, resnet  # noqa: F401  (registration)
from models.backbones.base import Backbone

__all__ = ["Backbone"]
