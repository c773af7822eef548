"""`gan`: DCGAN-style adversarial pretraining (Radford et al. 2015). The discriminator is the
backbone trunk with a 1-logit head; its trunk is what transfers. Stabilisers: Adam 2e-4 / β1 0.5,
BatchNorm in both nets, one-sided label smoothing (real = 0.9), Tanh generator output."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ..augment import to_float
from ..batches import BatchSource
from ..config import ConfigBase
from ..device import autocast, memory_format
from ..grids import image_grid
from ..registry import register_strategy
from ..strategies.base import Strategy


class Generator(nn.Module):
    """z -> 4×4 map -> ConvTranspose2d(4, stride 2)+BN+ReLU up to >= the image size -> Tanh,
    centre-cropped to exactly H×W; outputs images in [0, 1]."""

    def __init__(
        self, latent_dim: int, out_channels: int, image_size: tuple[int, int], width: int
    ) -> None:
        super().__init__()
        self.image_size = image_size
        n_up = max(1, math.ceil(math.log2(max(image_size) / 4)))
        chans = [min(512, width * 2 ** (n_up - 1 - i)) for i in range(n_up)]
        self.c0 = chans[0]
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, chans[0] * 16, bias=False),
            nn.BatchNorm1d(chans[0] * 16),
            nn.ReLU(True),
        )
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans, chans[1:], strict=False):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(chans[-1], out_channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d | nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net(self.fc(z).view(len(z), self.c0, 4, 4))
        h, w = self.image_size
        top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
        return (x[..., top : top + h, left : left + w] + 1) / 2


@dataclass(frozen=True)
class GANConfig(ConfigBase):
    """DCGAN hyper-parameters (Radford et al.): Adam for both nets, no weight decay, no schedule."""

    lr: float = 2e-4  # Adam lr for generator and discriminator
    beta1: float = 0.5  # Adam β1; 0.9 makes the game oscillate
    latent_dim: int = 64  # generator input noise dimension
    width: int = 64  # generator channels at its last hidden layer (doubles per level up)
    real_label: float = 0.9  # one-sided label smoothing for real images (stabiliser)
    spectral_norm: bool = False  # spectral normalisation of D's conv/linear weights (Miyato 2018)
    feature_matching: float = 0.0  # weight of the feature-matching G loss (Salimans et al. 2016)


@register_strategy("gan")
class GAN(Strategy):
    """Alternating D and G Adam steps with the non-saturating generator loss."""

    config_class = GANConfig

    def build(self) -> None:
        c, dev = self.config, self.device
        self.disc = self.build_backbone(num_classes=1)
        if c.spectral_norm:
            for m in list(self.disc.modules()):
                if isinstance(m, nn.Conv2d | nn.Linear):
                    spectral_norm(m)
        self.gen_net = Generator(c.latent_dim, self.in_channels, self.image_size, c.width).to(dev)
        betas = (c.beta1, 0.999)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=c.lr, betas=betas)
        self.opt_g = torch.optim.Adam(self.gen_net.parameters(), lr=c.lr, betas=betas)
        self.modules = {"disc": self.disc, "gen": self.gen_net}
        self.optimizers = {"opt_d": self.opt_d, "opt_g": self.opt_g}

    def train_batches(self, data, *, gen, epoch) -> dict[str, float]:
        c, dev = self.config, self.device
        batches = data.epoch(gen, self.run.batch_size, self.steps)
        b = min(self.run.batch_size, data.num_examples)
        z_all = torch.randn(self.steps, b, c.latent_dim, generator=gen).to(dev)
        mf = memory_format(dev)
        self.disc.train()
        self.gen_net.train()
        sums = torch.zeros(4, device=dev)
        n = 0
        for s, (xb, _) in enumerate(batches):
            real = to_float(xb.to(dev, non_blocking=True)).contiguous(memory_format=mf)
            n += len(real)
            with autocast(dev):
                fake = self.gen_net(z_all[s][: len(real)])
                d_real = self.disc(real).float().squeeze(1)
                d_fake = self.disc(fake.detach()).float().squeeze(1)
            loss_d = F.binary_cross_entropy_with_logits(
                d_real, torch.full_like(d_real, c.real_label)
            ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            loss_g = self.generator_loss(real, fake)
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
            sums += torch.stack(
                [
                    loss_d.detach(),
                    loss_g.detach(),
                    torch.sigmoid(d_real.detach()).mean(),
                    torch.sigmoid(d_fake.detach()).mean(),
                ]
            )
        d, g, pr, pf = (sums / self.steps).tolist()
        return {
            "loss": d + g,
            "d_loss": d,
            "g_loss": g,
            "d_real": pr,
            "d_fake": pf,
            "images": n,
        }

    def generator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Non-saturating loss, plus (feature_matching > 0) the squared distance between the
        batch means of D's pooled features on real and generated images."""
        c = self.config
        with autocast(self.device):
            feats = self.disc.forward_features(fake)
            d_gen = self.disc.forward_head(feats).float().squeeze(1)
        loss = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
        if c.feature_matching > 0:
            with torch.no_grad(), autocast(self.device):
                target = self.disc.forward_features(real).float().mean(0)
            loss = loss + c.feature_matching * (feats.float().mean(0) - target).pow(2).sum()
        return loss

    @torch.no_grad()
    def samples(self, n: int) -> torch.Tensor:
        """n generator samples from a fixed noise seed (comparable across epochs and runs)."""
        z = torch.randn(n, self.config.latent_dim, generator=torch.Generator().manual_seed(1234))
        self.gen_net.eval()
        return self.gen_net(z.to(self.device)).float()

    def artifacts(self, data: BatchSource) -> dict[str, np.ndarray]:
        return {"gan_samples": image_grid(self.samples(self.run.grid_images), min_tile=48)}

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """D's trunk with spectral normalisation folded into plain weights (loadable as is)."""
        if not self.config.spectral_norm:
            return self.disc.trunk_state_dict()
        disc = copy.deepcopy(self.disc).eval()
        for m in disc.modules():
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        return disc.trunk_state_dict()
