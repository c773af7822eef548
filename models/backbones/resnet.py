"""`resnet18`: torchvision's ResNet-18 adapted to small images (3×3 stride-1 stem, no max-pool).

Built from torchvision's own BasicBlock layers with random init; no weights are downloaded."""

from __future__ import annotations

from typing import ClassVar

from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from ..backbones.base import Backbone
from ..registry import register_backbone


@register_backbone("resnet18")
class ResNet18(Backbone):
    """ResNet-18 trunk (stem, layer1..layer4; 512 features) with a swappable linear head."""

    stage_names: ClassVar[list[str]] = ["stem", "layer1", "layer2", "layer3", "layer4"]

    def __init__(self, *, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__(
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=image_size,
            num_features=512,
        )
        tv = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=max(num_classes, 1))
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        nn.init.kaiming_normal_(self.stem[0].weight, mode="fan_out", nonlinearity="relu")
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            tv.layer1,
            tv.layer2,
            tv.layer3,
            tv.layer4,
        )
