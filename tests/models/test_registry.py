"""Registry sweep (timm style): every backbone × strategy × channels × size builds, runs one step,
and hands over a trunk that loads into a fresh model with a new head; outputs finite."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from warmstart import models as M
from warmstart.models.registry import register_backbone, register_strategy

SIZES = (8, 28, 32)
FAST = M.PretrainConfig(epochs=1, min_steps_per_epoch=1, batch_size=4, grid_images=8, num_threads=1)


def test_names():
    assert M.list_backbones() == ["convnet-s", "resnet18"]
    assert M.list_strategies() == ["supervised", "gan", "autoencoder", "simclr"]
    assert M.list_transfer_modes()[:3] == ["finetune", "linear_probe", "lp_ft"]
    assert "freeze=stage2" in M.list_transfer_modes("convnet-s")
    assert "freeze=layer3" in M.list_transfer_modes("resnet18")


@pytest.mark.parametrize("backbone", M.list_backbones())
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", SIZES)
def test_backbone_contract(backbone, channels, size):
    torch.manual_seed(0)
    m = M.get_backbone(
        backbone, in_channels=channels, num_classes=7, image_size=(size, size)
    ).eval()
    x = torch.rand(3, channels, size, size)
    f = m.forward_features(x)
    assert f.shape == (3, m.num_features)
    out = m(x)
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    assert torch.equal(m.forward_head(f), out)
    m.reset_classifier(4)
    assert m(x).shape == (3, 4)
    assert m.stage_names and all(hasattr(m, s) for s in m.stage_names)
    c, h, w = m.trunk_shape()
    assert c == m.num_features and h >= 1 and w >= 1


@pytest.mark.parametrize("size", SIZES)
def test_convnet_keeps_a_4x4_map(size):
    """8 px digits keep a 4×4 map before pooling (pooling stops below 8 px)."""
    m = M.get_backbone("convnet-s", in_channels=1, num_classes=2, image_size=(size, size))
    assert m.trunk_shape()[1:] == (max(4, size // 4),) * 2


# Every backbone × strategy at every size, channels alternating 1, 3, 1 over the sizes (both
# channel counts per pair, half the runs of the full product: the suite runs on 2 cores).
SWEEP = [
    (b, s, (1, 3)[i % 2], size)
    for b in M.list_backbones()
    for s in M.list_strategies()
    for i, size in enumerate(SIZES)
]


@pytest.mark.parametrize("backbone, strategy, channels, size", SWEEP)
def test_strategy_sweep(backbone, strategy, channels, size):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, channels, size, size), dtype=np.uint8)
    y = np.array([0, 1, 2, 1])
    r = M.pretrain(
        strategy,
        backbone=backbone,
        in_channels=channels,
        image_size=(size, size),
        images=x,
        labels=y,
        num_classes=3,
        config=FAST,
    )
    assert r.epochs_done == 1 and np.isfinite(r.history[0]["loss"])
    assert r.backbone_state and not any(k.startswith("head.") for k in r.backbone_state)
    assert all(torch.isfinite(v.float()).all() for v in r.backbone_state.values())
    target = M.get_backbone(backbone, in_channels=channels, num_classes=5, image_size=(size, size))
    M.load_trunk(target, r.backbone_state)
    out = target.eval()(torch.rand(2, channels, size, size))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    for img in r.artifacts.values():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_duplicate_registration_raises():
    with pytest.raises(M.ModelError, match="already registered"):
        register_backbone("convnet-s")(type("X", (), {}))
    with pytest.raises(M.ModelError, match="already registered"):
        register_strategy("gan")(type("Y", (), {}))
    with pytest.raises(M.ModelError, match="already registered by Freeze"):
        M.register_transfer_mode("freeze")(type("Z", (), {}))
    assert M.transfer_mode_class("freeze").__name__ == "Freeze"  # the original stays


def test_strategy_defaults_are_the_published_hyperparameters():
    """The demo's numbers depend on these: PretrainConfig(epochs, seed, device) + each strategy's
    default config must give exactly these hyper-parameters."""
    run = M.PretrainConfig(epochs=16, seed=0, device="cpu")
    assert (run.min_steps_per_epoch, run.batch_size, run.grid_images, run.strategy) == (
        20,
        64,
        64,
        None,
    )
    assert M.strategy_class("supervised").config_class().to_dict() == {
        "lr": 3e-3,
        "weight_decay": 5e-4,
        "schedule": "onecycle",
        "warmup_frac": 0.15,
        "label_smoothing": 0.0,
        "pad": None,
        "hflip": False,
    }
    assert M.strategy_class("gan").config_class().to_dict() == {
        "lr": 2e-4,
        "beta1": 0.5,
        "latent_dim": 64,
        "width": 64,
        "real_label": 0.9,
        "spectral_norm": False,
        "feature_matching": 0.0,
    }
    assert M.strategy_class("autoencoder").config_class().to_dict() == {
        "lr": 3e-3,
        "weight_decay": 5e-4,
        "schedule": "onecycle",
        "warmup_frac": 0.15,
        "noise_std": 0.1,
        "mask_frac": 0.0,
        "mask_patch": 1,
        "width": 64,
    }
    assert M.strategy_class("simclr").config_class().to_dict() == {
        "lr": 3e-3,
        "weight_decay": 5e-4,
        "schedule": "onecycle",
        "warmup_frac": 0.15,
        "temperature": 0.2,
        "proj_dim": 64,
        "min_scale": 0.35,
        "max_aspect": 4 / 3,
        "max_rotation": 180.0,
        "jitter": 0.4,
        "grey_prob": 0.2,
    }
    needs = [M.strategy_class(s).needs_labels for s in M.list_strategies()]
    assert needs == [True, False, False, False]
    t = M.TrainConfig(epochs=12, seed=1)
    assert (t.lr, t.min_steps_per_epoch, t.backbone_lr_scale, t.lp_ft_lr_scale) == (
        3e-3,
        25,
        0.1,
        0.3,
    )
    assert M.TrainConfig.from_dict(t.to_dict()) == t
    assert M.PretrainConfig.from_dict(
        M.strategy_class("gan").resolve(run).to_dict(), M.GANConfig
    ) == run.with_strategy(M.GANConfig())


def test_unknown_names_list_valid_ones():
    with pytest.raises(M.UnknownNameError, match="valid backbones: convnet-s, resnet18"):
        M.get_backbone("vgg", in_channels=1, num_classes=2, image_size=(8, 8))
    with pytest.raises(M.UnknownNameError, match="supervised, gan, autoencoder"):
        M.pretrain(
            "diffusion",
            backbone="convnet-s",
            in_channels=1,
            image_size=(8, 8),
            images=np.zeros((2, 1, 8, 8), np.uint8),
        )
    x, y = np.zeros((4, 1, 8, 8), np.uint8), np.array([0, 1, 0, 1])
    with pytest.raises(M.UnknownNameError, match="finetune, linear_probe, lp_ft, freeze=stage1"):
        M.fit_target(
            backbone="convnet-s",
            init_state=None,
            mode="freeze=layer9",
            in_channels=1,
            image_size=(8, 8),
            num_classes=2,
            train=(x, y),
            val=(x, y),
            config=M.TrainConfig(),
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"in_channels": 2}, "in_channels=2"),
        ({"image_size": (4, 4)}, "8..1024 px"),
        ({"image_size": (2048, 2048)}, "8..1024 px"),
    ],
)
def test_bad_backbone_args(kwargs, match):
    args = {"in_channels": 1, "num_classes": 2, "image_size": (8, 8), **kwargs}
    with pytest.raises(M.ModelError, match=match):
        M.get_backbone("convnet-s", **args)


def test_bad_arrays_name_the_input():
    x, y = np.zeros((4, 1, 8, 8), np.uint8), np.array([0, 1, 0, 1])
    cfg = M.TrainConfig()
    common = {
        "backbone": "convnet-s",
        "init_state": None,
        "mode": "finetune",
        "image_size": (8, 8),
        "num_classes": 2,
        "config": cfg,
    }
    with pytest.raises(M.ModelError, match="train images have 1 channels but in_channels=3"):
        M.fit_target(**common, in_channels=3, train=(x, y), val=(x, y))
    with pytest.raises(M.ModelError, match="val labels span 0..5 but num_classes=2"):
        M.fit_target(**common, in_channels=1, train=(x, y), val=(x, np.array([0, 5, 0, 1])))
    with pytest.raises(M.ModelError, match="must be a uint8 numpy array"):
        M.fit_target(**common, in_channels=1, train=(x.astype(np.float32), y), val=(x, y))
    with pytest.raises(M.ModelError, match="needs labels"):
        M.pretrain("supervised", backbone="convnet-s", in_channels=1, image_size=(8, 8), images=x)
