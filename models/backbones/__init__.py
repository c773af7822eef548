"""Backbones; importing this package registers them (one file per backbone)."""

from ..backbones import convnet, resnet, torchvision  # noqa: F401  (registration)
from ..backbones.base import Backbone

__all__ = ["Backbone"]
