"""`convnet-s`: a small, fast CNN for 8-32 px images, the CPU default.

Three conv-BN-ReLU stages; 2×2 max-pooling after a stage only while the map is >= 8 px, so an
8×8 UCI digit keeps a 4×4 map (not 1×1) before global average pooling."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from ..backbones.base import Backbone
from ..registry import register_backbone


def _block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


@register_backbone("convnet-s")
class ConvNetS(Backbone):
    """conv(3×3)-BN-ReLU ×3, widths 32/64/128 (≈ 93k trunk weights), global average pool, linear."""

    stage_names: ClassVar[list[str]] = ["stage1", "stage2", "stage3"]
    widths: ClassVar[tuple[int, int, int]] = (32, 64, 128)

    def __init__(self, *, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__(
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=image_size,
            num_features=self.widths[-1],
        )
        size = min(self.image_size)
        c_in = in_channels
        for i, (name, width) in enumerate(zip(self.stage_names, self.widths, strict=True)):
            pool = i < len(self.widths) - 1 and size >= 8
            setattr(self, name, _block(c_in, width, pool))
            size = size // 2 if pool else size
            c_in = width
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
