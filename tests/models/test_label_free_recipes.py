"""The label-free recipes of issue 16: SimCLR's views and loss, the GAN's spectral norm and
feature matching, the autoencoder's patch masking. (The registry-wide contract tests also run
simclr: finite losses, a loadable trunk, exact resume.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from warmstart import models as M
from warmstart.models.strategies import AutoencoderConfig, GANConfig, SimCLRConfig
from warmstart.models.strategies.simclr import nt_xent, random_views

CPU = {"device": "cpu", "num_threads": 1}


def rgb(n: int = 32, size: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def run(strategy: str, cfg, images: np.ndarray, epochs: int = 1) -> M.PretrainResult:
    pre = M.PretrainConfig(epochs=epochs, min_steps_per_epoch=2, batch_size=8, grid_images=8, **CPU)
    return M.pretrain(
        strategy,
        backbone="convnet-s",
        in_channels=images.shape[1],
        image_size=images.shape[2:],
        images=images,
        config=pre.with_strategy(cfg),
    )


def test_nt_xent_matches_its_definition_and_rewards_agreeing_views():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / 0.5
    expected = 0.0
    for i in range(8):
        pos = (i + 4) % 8
        others = [j for j in range(8) if j != i]
        expected += -(sim[i, pos] - torch.logsumexp(sim[i, others], 0)) / 8
    assert float(nt_xent(z1, z2, 0.5)) == pytest.approx(float(expected), rel=1e-5)
    # identical views of distinct (orthogonal) embeddings: near-zero loss; swapped pairs: large
    eye = torch.eye(4, 8) * 10
    assert float(nt_xent(eye, eye, 0.1)) < 1e-3
    assert float(nt_xent(eye, eye.roll(1, 0), 0.1)) > 5


def test_random_views_are_seeded_in_range_and_differ():
    x = torch.from_numpy(rgb(6)).float() / 255
    c = SimCLRConfig()
    a = random_views(x, c, torch.Generator().manual_seed(3))
    b = random_views(x, c, torch.Generator().manual_seed(3))
    other = random_views(x, c, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert float((a - other).abs().mean()) > 0.02
    # the identity warp (no crop, rotation, jitter, grey) returns the image itself
    ident = SimCLRConfig(min_scale=1.0, max_aspect=1.0, max_rotation=0.0, jitter=0.0, grey_prob=0.0)
    v = random_views(x, ident, torch.Generator().manual_seed(0))
    flipped = (v - x.flip(-1)).abs().amax((1, 2, 3)) < 1e-4
    same = (v - x).abs().amax((1, 2, 3)) < 1e-4
    assert bool((flipped | same).all())


def test_simclr_loss_falls_below_chance_on_a_learnable_set():
    # the 8 corners of the RGB cube as flat images: two views of one image share its colour
    corners = np.array([[(i >> b) & 1 for b in range(3)] for i in range(8)], dtype=np.uint8) * 255
    colours = np.broadcast_to(corners[:, :, None, None], (8, 3, 8, 8)).copy()
    r = run("simclr", SimCLRConfig(lr=1e-2, jitter=0.1, grey_prob=0.0), colours, epochs=6)
    chance = math.log(2 * 8 - 1)
    assert (
        r.history[-1]["loss"] < 0.5 * r.history[0]["loss"] and r.history[-1]["loss"] < 0.4 * chance
    )


def test_gan_spectral_norm_hands_over_plain_normalised_weights():
    r = run("gan", GANConfig(spectral_norm=True, feature_matching=1.0), rgb())
    plain = M.get_backbone("convnet-s", in_channels=3, num_classes=0, image_size=(12, 12))
    assert set(r.backbone_state) == set(plain.trunk_state_dict())
    assert all(torch.isfinite(v.float()).all() for v in r.backbone_state.values())
    w = r.backbone_state["stage2.0.weight"].flatten(1)
    assert float(torch.linalg.matrix_norm(w, 2)) == pytest.approx(1.0, abs=0.15)
    assert all(np.isfinite(h["g_loss"]) for h in r.history)


def test_autoencoder_patch_mask_zeroes_whole_patches_at_the_set_rate():
    cfg = AutoencoderConfig(noise_std=0.0, mask_frac=0.5, mask_patch=4)
    strat = M.strategy_class("autoencoder")(
        backbone="convnet-s",
        in_channels=3,
        image_size=(12, 12),
        num_classes=None,
        num_images=8,
        config=M.PretrainConfig(**CPU).with_strategy(cfg),
        device=torch.device("cpu"),
    )
    x = torch.ones(200, 3, 12, 12)
    mask = strat.draw_mask(tuple(x.shape), torch.Generator().manual_seed(0))
    out = strat.corrupt(x, torch.zeros_like(x), mask)
    blocks = out.unfold(2, 4, 4).unfold(3, 4, 4)  # N, C, 3, 3, 4, 4
    flat = blocks.reshape(200, 3, 9, 16)
    assert bool(((flat == 0).all(-1) | (flat == 1).all(-1)).all())  # whole patches only
    assert bool((flat[:, 0] == flat[:, 2]).all())  # shared across channels
    assert float((out == 0).float().mean()) == pytest.approx(0.5, abs=0.03)
