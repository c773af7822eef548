"""`autoencoder`: a convolutional (denoising) autoencoder whose encoder is the backbone trunk
(feature maps before pooling) and whose small decoder upsamples back to the input size; MSE."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..augment import to_float
from ..batches import BatchSource
from ..config import OptimConfig
from ..device import autocast, memory_format
from ..grids import image_grid
from ..registry import register_strategy
from ..strategies.base import Strategy


class Decoder(nn.Module):
    """1×1 conv, then (nearest ×2 upsample, 3×3 conv, BN, ReLU) until >= H×W, 3×3 conv to the
    image channels, bilinear resize to exactly H×W, sigmoid: images in [0, 1]."""

    def __init__(
        self,
        in_ch: int,
        in_hw: tuple[int, int],
        out_ch: int,
        image_size: tuple[int, int],
        width: int,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        ratio = max(image_size[0] / in_hw[0], image_size[1] / in_hw[1])
        n_up = max(0, math.ceil(math.log2(ratio)))
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(n_up):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(True),
            ]
        layers.append(nn.Conv2d(width, out_ch, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.net(z)
        if tuple(y.shape[-2:]) != self.image_size:
            y = F.interpolate(y, size=self.image_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(y)


@dataclass(frozen=True)
class AutoencoderConfig(OptimConfig):
    """Denoising autoencoder: AdamW + one-cycle (OptimConfig's defaults) on the MSE of the clean
    image reconstructed from a corrupted copy."""

    noise_std: float = 0.1  # Gaussian noise σ on [0, 1] inputs (0: off)
    mask_frac: float = 0.0  # fraction of pixels (or patches) zeroed (0: off)
    mask_patch: int = 1  # side of the square patches masked together (1: single pixels)
    width: int = 64  # decoder channels


@register_strategy("autoencoder")
class Autoencoder(Strategy):
    """Encoder = backbone trunk; input corrupted by Gaussian noise / pixel masking when set."""

    config_class = AutoencoderConfig

    def build(self) -> None:
        self.encoder = self.build_backbone(num_classes=0)
        ch, h, w = self.encoder.trunk_shape()
        width = self.config.width
        self.decoder = Decoder(ch, (h, w), self.in_channels, self.image_size, width).to(self.device)
        self.train_together(encoder=self.encoder, decoder=self.decoder)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device):
            return self.decoder(self.encoder.forward_trunk(x)).float()

    def corrupt(self, x: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.noise_std > 0:
            x = (x + c.noise_std * noise.to(x.device)).clamp(0, 1)
        if c.mask_frac > 0:
            x = x * (mask.to(x.device) >= c.mask_frac)
        return x

    def draw_mask(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        """Uniform [0, 1) scores per pixel, or per mask_patch² patch shared over channels
        (MAE-style masking); corrupt() zeroes the entries below mask_frac."""
        p = self.config.mask_patch
        if p <= 1:
            return torch.rand(shape, generator=gen)
        n, _, h, w = shape
        scores = torch.rand((n, 1, -(-h // p), -(-w // p)), generator=gen)
        return scores.repeat_interleave(p, 2).repeat_interleave(p, 3)[..., :h, :w].expand(shape)

    def train_batches(self, data, *, gen, epoch) -> dict[str, float]:
        c, mf = self.config, memory_format(self.device)

        def loss_of(batch: torch.Tensor) -> torch.Tensor:
            clean = batch.contiguous(memory_format=mf)
            noise = torch.randn(clean.shape, generator=gen) if c.noise_std > 0 else None
            mask = self.draw_mask(tuple(clean.shape), gen) if c.mask_frac > 0 else None
            return F.mse_loss(self.reconstruct(self.corrupt(clean, noise, mask)), clean)

        return self.optimise_epoch(data, loss_of, gen=gen, epoch=epoch)

    @torch.no_grad()
    def artifacts(self, data: BatchSource) -> dict[str, np.ndarray]:
        """Inputs spread evenly over the set (it may be sorted by class), each row of inputs
        directly above its row of reconstructions. Deterministic: draws no random numbers."""
        n = data.num_examples
        k = min(self.run.grid_images // 2, n)
        cols = min(8, k)
        k -= k % cols
        self.encoder.eval()
        self.decoder.eval()
        idx = torch.linspace(0, n - 1, k).round().long()
        orig = to_float(data.take(idx).to(self.device))
        rec = self.reconstruct(orig)
        pairs = torch.stack(
            [orig.view(-1, cols, *orig.shape[1:]), rec.view(-1, cols, *rec.shape[1:])], 1
        )
        return {"ae_reconstructions": image_grid(pairs.flatten(0, 2), nrow=cols)}

    def backbone_state(self) -> dict[str, torch.Tensor]:
        return self.encoder.trunk_state_dict()
