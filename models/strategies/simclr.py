"""`simclr`: contrastive self-supervised pretraining (Chen et al. 2020, SimCLR) — the modern
label-free reference beside the article's GAN and autoencoder. Two random views of each image
(resized crop, rotation, flip, colour jitter, greyscale) go through the trunk and a 2-layer MLP
projection; the NT-Xent loss pulls the two views of an image together and pushes the other
2(B - 1) views apart. Only the trunk transfers; the projection head is dropped."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import OptimConfig
from ..device import autocast, memory_format
from ..registry import register_strategy
from ..strategies.base import Strategy


@dataclass(frozen=True)
class SimCLRConfig(OptimConfig):
    """AdamW + one-cycle (OptimConfig's defaults) on NT-Xent; augmentation strengths below."""

    temperature: float = 0.2  # NT-Xent τ; 0.1-0.5 in the paper, lower suits small batches
    proj_dim: int = 64  # projection output dimension
    min_scale: float = 0.35  # random resized crop: smallest area fraction kept
    max_aspect: float = 4 / 3  # random resized crop: aspect ratio in [1/this, this]
    max_rotation: float = 180.0  # degrees, uniform in ±this
    jitter: float = 0.4  # brightness / contrast / saturation jitter strength
    grey_prob: float = 0.2  # probability of a greyscale view


def random_views(x: torch.Tensor, c: SimCLRConfig, gen: torch.Generator) -> torch.Tensor:
    """One random view of each image of x (N, C, H, W) in [0, 1]: an affine warp (crop scale,
    aspect, rotation, flip, translation; border reflected) then colour jitter and greyscale.
    All draws come from `gen` (CPU), so a seeded run is reproducible on any device."""
    n = len(x)
    u = torch.rand(n, 8, generator=gen)
    area = c.min_scale + (1 - c.min_scale) * u[:, 0]
    aspect = torch.exp((u[:, 1] * 2 - 1) * math.log(c.max_aspect))
    sx, sy = torch.sqrt(area * aspect).clamp(max=1), torch.sqrt(area / aspect).clamp(max=1)
    angle = (u[:, 2] * 2 - 1) * math.radians(c.max_rotation)
    flip = torch.where(u[:, 3] < 0.5, -1.0, 1.0)
    tx, ty = (u[:, 4] * 2 - 1) * (1 - sx), (u[:, 5] * 2 - 1) * (1 - sy)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([sx * cos * flip, -sy * sin, tx], 1),
            torch.stack([sx * sin * flip, sy * cos, ty], 1),
        ],
        1,
    ).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if x.shape[1] == 3:
        jit = (1 + c.jitter * (torch.rand(n, 3, generator=gen) * 2 - 1)).to(x.device)
        grey = v.mean(1, keepdim=True)
        v = grey + (v - grey) * jit[:, 2, None, None, None]  # saturation
        use_grey = (u[:, 6] < c.grey_prob).to(x.device)[:, None, None, None]
        v = torch.where(use_grey, v.mean(1, keepdim=True).expand_as(v), v)
    else:
        jit = (1 + c.jitter * (torch.rand(n, 3, generator=gen) * 2 - 1)).to(x.device)
    mean = v.mean((1, 2, 3), keepdim=True)
    v = mean + (v - mean) * jit[:, 1, None, None, None]  # contrast
    return (v * jit[:, 0, None, None, None]).clamp(0, 1)  # brightness


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """The normalised-temperature cross-entropy of SimCLR over 2B views: for each view, its
    partner is the positive among the other 2B - 1."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


@register_strategy("simclr")
class SimCLR(Strategy):
    """Trunk + pooled features + MLP projection, trained with NT-Xent on two views per image."""

    config_class = SimCLRConfig

    def build(self) -> None:
        self.encoder = self.build_backbone(num_classes=0)
        d = self.encoder.num_features
        self.proj = nn.Sequential(
            nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, self.config.proj_dim)
        ).to(self.device)
        self.train_together(encoder=self.encoder, proj=self.proj)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device):
            return self.proj(self.encoder.forward_features(x)).float()

    def train_batches(self, data, *, gen, epoch) -> dict[str, float]:
        c, mf = self.config, memory_format(self.device)

        def loss_of(clean: torch.Tensor) -> torch.Tensor:
            v1 = random_views(clean, c, gen).contiguous(memory_format=mf)
            v2 = random_views(clean, c, gen).contiguous(memory_format=mf)
            return nt_xent(self.embed(v1), self.embed(v2), c.temperature)

        return self.optimise_epoch(data, loss_of, gen=gen, epoch=epoch)  # images: two views each

    def backbone_state(self) -> dict[str, torch.Tensor]:
        return self.encoder.trunk_state_dict()
