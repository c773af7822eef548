"""The backbone contract (timm style): trunk stages, `forward_features`, `forward_head`,
`reset_classifier`. Inputs are float N×C×H×W in [0, 1]; the model normalises internally, so a
logged model needs no separate preprocessing."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class Backbone(nn.Module):
    """Base class: subclasses build the modules named in `stage_names` and set `num_features`."""

    name: ClassVar[str] = ""
    stage_names: ClassVar[list[str]] = []
    # Fixed input normalisation: the same for every dataset, so a pretrained trunk sees the
    # target's pixels on the scale it was trained on (BatchNorm absorbs the rest).
    input_mean: ClassVar[float] = 0.5
    input_std: ClassVar[float] = 0.25

    def __init__(
        self, *, in_channels: int, num_classes: int, image_size: tuple[int, int], num_features: int
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.num_features = num_features
        self.num_classes = num_classes
        self.frozen_upto: str | None = None
        self.head: nn.Module = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The trunk stages in order (the head excluded)."""
        return [(n, getattr(self, n)) for n in self.stage_names]

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps before pooling (N, C', h, w): the autoencoder's encoder output."""
        x = (x - self.input_mean) / self.input_std
        for _, stage in self.stages():
            x = stage(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled feature vector (N, num_features): global average pool over the trunk maps."""
        return self.forward_trunk(x).mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from a feature vector."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a fresh one for `num_classes` (0: identity, features out)."""
        device = next(self.parameters()).device
        self.head = self._make_head(num_classes).to(device)
        self.num_classes = num_classes

    def trunk_state_dict(self) -> dict[str, torch.Tensor]:
        """The trunk's weights and buffers only (CPU copies): what pretraining hands over."""
        return {
            k: v.detach().cpu().clone()
            for k, v in self.state_dict().items()
            if not k.startswith("head.")
        }

    def train(self, mode: bool = True) -> Backbone:
        """As nn.Module.train, but stages frozen by `freeze` stay in eval mode (BN stats fixed)."""
        super().train(mode)
        if mode and self.frozen_upto is not None:
            for name, stage in self.stages():
                stage.eval()
                if name == self.frozen_upto:
                    break
        return self

    @torch.no_grad()
    def trunk_shape(self) -> tuple[int, int, int]:
        """(channels, h, w) of the trunk output for this model's image size."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = self.forward_trunk(torch.zeros(1, self.in_channels, *self.image_size, device=device))
        self.train(was_training)
        return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])
