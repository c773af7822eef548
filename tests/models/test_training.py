"""Training smoke tests on real (tiny) data: the loss falls, transfer beats chance, freezing really
freezes, GAN/autoencoder outputs have the right shapes and finite values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from warmstart import models as M
from warmstart.models.strategies.autoencoder import Autoencoder
from warmstart.models.strategies.gan import GAN, Generator

CPU = {"num_threads": 1, "device": "cpu"}


def test_supervised_pretraining_loss_falls(digits):
    x, y = digits
    r = M.pretrain(
        "supervised",
        backbone="convnet-s",
        in_channels=1,
        image_size=(8, 8),
        images=x[:600],
        labels=y[:600],
        num_classes=10,
        config=M.PretrainConfig(epochs=3, **CPU),
    )
    losses = [h["loss"] for h in r.history]
    assert losses[-1] < 0.5 * losses[0], losses
    assert r.history[-1]["acc"] > 0.8
    # no images of its own: the loss curve is plotted from the history by the caller
    assert r.images_per_second > 0 and r.artifacts == {}


def test_finetune_learns_and_selects_best_epoch(digit_split):
    train, val, test = digit_split
    cfg = M.TrainConfig(epochs=4, min_steps_per_epoch=10, **CPU)
    seen = []
    r = M.fit_target(
        backbone="convnet-s",
        init_state=None,
        mode="finetune",
        in_channels=1,
        image_size=(8, 8),
        num_classes=10,
        train=train,
        val=val,
        config=cfg,
        on_epoch_end=lambda e, m, p: seen.append((e, m["val_acc"], p)),
    )
    assert [h["epoch"] for h in r.history] == [1, 2, 3, 4] == [e for e, _, _ in seen]
    assert all(p is None for _, _, p in seen)
    assert set(r.history[0]) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert r.best_val_acc == max(h["val_acc"] for h in r.history)
    assert r.history[r.best_epoch - 1]["val_acc"] == r.best_val_acc
    assert not r.model.training and next(r.model.parameters()).device.type == "cpu"
    acc = M.evaluate(r.model, *test)["acc"]
    assert acc > 0.7, acc  # 20 images per class, chance is 0.1
    p = M.predict_proba(r.model, test[0][:50])
    assert p.shape == (50, 10) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert (
        p.argmax(1) == r.model(torch.from_numpy(test[0][:50]).float() / 255).argmax(1).numpy()
    ).all()


@pytest.fixture(scope="module")
def pretrained(digit_split):
    """A supervised trunk pretrained on the images outside the target's train/val split."""
    _, _, (xs, ys) = digit_split
    torch.set_num_threads(1)
    return M.pretrain(
        "supervised",
        backbone="convnet-s",
        in_channels=1,
        image_size=(8, 8),
        images=xs,
        labels=ys,
        num_classes=10,
        config=M.PretrainConfig(epochs=3, **CPU),
    ).backbone_state


def _target(digit_split):
    (xt, yt), (xv, yv), _ = digit_split
    return (xt, yt), (xv, yv)


@pytest.mark.parametrize(
    "mode, frozen",
    [("linear_probe", ["stage1", "stage2", "stage3"]), ("freeze=stage2", ["stage1", "stage2"])],
)
def test_freezing_really_freezes(pretrained, digit_split, mode, frozen):
    train, val = _target(digit_split)
    r = M.fit_target(
        backbone="convnet-s",
        init_state=pretrained,
        mode=mode,
        in_channels=1,
        image_size=(8, 8),
        num_classes=10,
        train=train,
        val=val,
        config=M.TrainConfig(epochs=6, min_steps_per_epoch=25, **CPU),
    )
    state = r.model.state_dict()
    for k, v in pretrained.items():  # weights *and* BatchNorm running statistics
        stage = k.split(".")[0]
        if stage in frozen:
            assert torch.equal(state[k], v), k
    for name, stage in r.model.stages():
        grads = {p.requires_grad for p in stage.parameters()}
        assert grads == ({False} if name in frozen else {True}), name
    if mode.startswith("freeze="):  # the unfrozen stage did train
        assert not torch.equal(state["stage3.0.weight"], pretrained["stage3.0.weight"])
    assert r.best_val_acc > 0.8


def test_freeze_function(pretrained):
    m = M.get_backbone("convnet-s", in_channels=1, num_classes=3, image_size=(8, 8))
    assert M.freeze(m, "stage1") == ["stage1"]
    m.train()
    assert not m.stage1.training and m.stage2.training and m.head.training
    with pytest.raises(M.UnknownNameError, match="stage1, stage2, stage3"):
        M.freeze(m, "layer4")


def test_transfer_beats_scratch_few_shot(pretrained, digit_split):
    """3 images per class: probing a pretrained trunk beats training from scratch."""
    (xt, yt), (xv, yv) = _target(digit_split)
    pick = np.concatenate([np.where(yt == c)[0][:3] for c in range(10)])
    train, val = (xt[pick], yt[pick]), (xv, yv)
    cfg = M.TrainConfig(epochs=3, min_steps_per_epoch=10, **CPU)
    common = {
        "backbone": "convnet-s",
        "in_channels": 1,
        "image_size": (8, 8),
        "num_classes": 10,
        "train": train,
        "val": val,
        "config": cfg,
    }
    lp = M.fit_target(init_state=pretrained, mode="linear_probe", **common)
    lpft = M.fit_target(init_state=pretrained, mode="lp_ft", **common)
    scratch = M.fit_target(init_state=None, mode="finetune", **common)
    assert len(lp.probe_history) == len(cfg.probe_weight_decays) == len(lpft.probe_history)
    assert lp.best_val_acc > scratch.best_val_acc
    assert lpft.best_val_acc >= lp.probe_history[0]["val_acc"] - 0.1


@pytest.mark.parametrize("size", [(8, 8), (28, 28), (32, 32), (12, 20)])
def test_gan_generator_exact_size(size):
    g = Generator(16, 3, size, 8).eval()
    out = g(torch.randn(5, 16))
    assert out.shape == (5, 3, *size)
    assert out.min() >= 0 and out.max() <= 1


def test_gan_and_autoencoder_outputs(digits):
    x, y = digits
    order = np.argsort(y[:256], kind="stable")  # sorted by class, as stored datasets often are
    sorted_x, sorted_y = x[:256][order], y[:256][order]
    cfg = M.PretrainConfig(epochs=2, min_steps_per_epoch=3, grid_images=16, **CPU)
    g = M.pretrain(
        "gan",
        backbone="convnet-s",
        in_channels=1,
        image_size=(8, 8),
        images=x[:64],
        labels=None,
        config=cfg,
    )
    assert set(g.history[0]) >= {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(np.isfinite(h["d_loss"]) and np.isfinite(h["g_loss"]) for h in g.history)
    grid = g.artifacts["gan_samples"]
    # 16 tiles of 8 px enlarged ×6 (≥ 48 px), 8 per row, 2 px padding: 2 × 50 + 2, 8 × 50 + 2
    assert grid.shape == (102, 402, 3) and grid.dtype == np.uint8
    assert grid.std() > 0
    a = M.pretrain(
        "autoencoder",
        backbone="convnet-s",
        in_channels=1,
        image_size=(8, 8),
        images=sorted_x,
        labels=None,
        config=M.PretrainConfig(epochs=3, **CPU),
    )
    assert a.history[-1]["loss"] < a.history[0]["loss"]
    _check_reconstruction_grid(a.artifacts["ae_reconstructions"], sorted_x, sorted_y)


def _tile(grid: np.ndarray, row: int, col: int, side: int = 32) -> np.ndarray:
    """One tile of an image_grid (2 px padding), as float grey."""
    top, left = 2 + row * (side + 2), 2 + col * (side + 2)
    return grid[top : top + side, left : left + side, 0].astype(float)


def _check_reconstruction_grid(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """32 inputs spread over a class-sorted set: 4 pairs of rows (inputs, then their
    reconstructions), 8 per row, tiles of 8 px enlarged ×4."""
    assert grid.shape == (8 * 34 + 2, 8 * 34 + 2, 3) and grid.dtype == np.uint8
    idx = np.linspace(0, len(x) - 1, 32).round().astype(int)
    assert len(set(y[idx].tolist())) == 10  # every class shown, not only the first one
    for pair in range(4):
        for col in range(8):
            want = np.kron(x[idx[pair * 8 + col], 0].astype(float), np.ones((4, 4)))
            inp, rec = _tile(grid, 2 * pair, col), _tile(grid, 2 * pair + 1, col)
            assert np.abs(inp - want).max() <= 1  # the input row is the input image
            assert rec.std() > 0 and np.abs(rec - inp).mean() > 0  # the row below is its output
            assert np.corrcoef(rec.ravel(), inp.ravel())[0, 1] > 0


@pytest.mark.parametrize(
    "backbone, size", [("convnet-s", (28, 28)), ("resnet18", (8, 8)), ("convnet-s", (12, 20))]
)
def test_strategy_modules_shapes(backbone, size):
    cfg = M.PretrainConfig(**CPU)
    kw = {
        "backbone": backbone,
        "in_channels": 3,
        "image_size": size,
        "num_classes": None,
        "num_images": 4,
        "config": cfg,
        "device": torch.device("cpu"),
    }
    ae = Autoencoder(**kw)
    x = torch.rand(2, 3, *size)
    ae.encoder.eval()
    ae.decoder.eval()
    rec = ae.reconstruct(x)
    assert rec.shape == x.shape and torch.isfinite(rec).all()
    gan = GAN(**kw)
    s = gan.samples(3)
    assert s.shape == (3, 3, *size) and torch.isfinite(s).all()
    assert gan.disc.eval()(s).shape == (3, 1)


def test_pixel_logistic_regression(digit_split):
    train, val, test = digit_split
    r = M.pixel_logistic_regression(train=train, val=val, test=test)
    assert 0.8 < r["test_acc"] < 1.0
    assert r["test_pred"].shape == (len(test[1]),)
    assert r["test_acc"] == pytest.approx(float((r["test_pred"] == test[1]).mean()))
    assert r["C"] in (0.01, 0.1, 1.0, 10.0)
