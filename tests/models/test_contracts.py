"""Contract tests over the registries: every registered backbone × strategy × transfer mode runs
at tiny sizes (finite numbers, right shapes, a trunk that loads), and every run resumed after a
crash ends bit-identical to an uninterrupted one. No name is written here: a backbone, strategy or
mode registered later is covered without touching this file."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from warmstart import models as M

CPU = {"device": "cpu", "num_threads": 1}
PRE = M.PretrainConfig(epochs=2, min_steps_per_epoch=1, batch_size=8, grid_images=8, **CPU)
FIT = M.TrainConfig(
    epochs=2,
    min_steps_per_epoch=1,
    batch_size=12,
    probe_views=2,
    probe_max_iter=10,
    eval_batch_size=16,
    **CPU,
)
BACKBONE_STRATEGY = [(b, s) for b in M.list_backbones() for s in M.list_strategies()]
BACKBONE_MODE = [(b, m) for b in M.list_backbones() for m in M.list_transfer_modes(b)]
ALL = [
    (b, s, m)
    for b in M.list_backbones()
    for s in M.list_strategies()
    for m in M.list_transfer_modes(b)
]


class Crash(Exception):
    pass


def crash_after(k: int):
    def cb(epoch, row, path):
        assert path is not None and path.exists()
        if epoch == k:
            raise Crash(epoch)

    return cb


def images(n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Grey 8×8 images whose class (of 3) sets a bright quadrant, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 60, (n, 1, 8, 8))
    for i, c in enumerate(y):
        x[i, 0, 4 * (c % 2) : 4 * (c % 2) + 4, 4 * (c // 2) : 4 * (c // 2) + 4] += 180
    return x.astype(np.uint8), y.astype(np.int64)


def pretrain_kw(backbone: str, strategy: str) -> dict:
    x, y = images()
    return {
        "backbone": backbone,
        "in_channels": 1,
        "image_size": (8, 8),
        "images": x,
        "labels": y,
        "num_classes": 3,
        "config": PRE,
    }


@functools.cache
def trunk(backbone: str, strategy: str) -> M.PretrainResult:
    torch.set_num_threads(1)
    return M.pretrain(strategy, **pretrain_kw(backbone, strategy))


def fit_kw(backbone: str, mode: str, init_state) -> dict:
    x, y = images(24, seed=1)
    return {
        "backbone": backbone,
        "init_state": init_state,
        "mode": mode,
        "in_channels": 1,
        "image_size": (8, 8),
        "num_classes": 3,
        "train": (x[:12], y[:12]),
        "val": (x[12:], y[12:]),
        "config": FIT,
    }


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def no_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_registries_are_populated():
    assert len(M.list_backbones()) >= 1 and len(M.list_strategies()) >= 1
    for b in M.list_backbones():
        modes = M.list_transfer_modes(b)
        assert len(modes) == len(set(modes)) >= 2
        assert [M.get_transfer_mode(m, b).name for m in modes]  # every listed name resolves


@pytest.mark.parametrize("strategy", M.list_strategies())
def test_strategy_declares_needs_and_config(strategy):
    cls = M.strategy_class(strategy)
    assert isinstance(cls.needs_labels, bool)
    default = cls.config_class()
    assert default.to_dict() == type(default).from_dict(default.to_dict()).to_dict()
    resolved = cls.resolve(M.PretrainConfig(epochs=3, seed=0, device="cpu"))
    assert resolved.strategy == default and resolved.epochs == 3
    assert resolved.to_dict()["strategy"] == default.to_dict()


@pytest.mark.parametrize("backbone, strategy", BACKBONE_STRATEGY)
def test_pretrain_contract(backbone, strategy):
    r = trunk(backbone, strategy)
    assert r.epochs_done == PRE.epochs == len(r.history) and r.resumed_from is None
    assert all(np.isfinite(row["loss"]) for row in r.history)
    assert r.backbone_state and not any(k.startswith("head.") for k in r.backbone_state)
    assert all(torch.isfinite(v.float()).all() for v in r.backbone_state.values())
    for img in r.artifacts.values():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    model = M.get_backbone(backbone, in_channels=1, num_classes=5, image_size=(8, 8))
    M.load_trunk(model, r.backbone_state)
    out = model.eval()(torch.rand(2, 1, 8, 8))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize("backbone, strategy", BACKBONE_STRATEGY)
def test_pretrain_resume_is_exact(tmp_path, backbone, strategy):
    kw = pretrain_kw(backbone, strategy)
    full = trunk(backbone, strategy)
    with pytest.raises(Crash):
        M.pretrain(strategy, **kw, checkpoint_dir=tmp_path, on_epoch_end=crash_after(1))
    resumed = M.pretrain(strategy, **kw, checkpoint_dir=tmp_path)
    assert resumed.resumed_from == 1 and resumed.epochs_done == full.epochs_done
    assert same_state(full.backbone_state, resumed.backbone_state)
    assert no_seconds(full.history) == no_seconds(resumed.history)
    assert all(np.array_equal(full.artifacts[k], resumed.artifacts[k]) for k in full.artifacts)


@functools.cache
def fit(backbone: str, strategy: str | None, mode: str) -> M.FitResult:
    torch.set_num_threads(1)
    state = trunk(backbone, strategy).backbone_state if strategy else None
    return M.fit_target(**fit_kw(backbone, mode, state))


@pytest.mark.parametrize("backbone, strategy, mode", ALL)
def test_fit_contract(backbone, strategy, mode):
    r = fit(backbone, strategy, mode)
    assert r.history and r.resumed_from is None
    assert [row["epoch"] for row in r.history] == list(range(1, len(r.history) + 1))
    for row in r.history:
        assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])
        assert 0.0 <= row["val_acc"] <= 1.0
    assert r.best_val_acc == max(row["val_acc"] for row in r.history)
    assert r.history[r.best_epoch - 1]["val_acc"] == r.best_val_acc
    assert not r.model.training and next(r.model.parameters()).device.type == "cpu"
    out = r.model(torch.rand(4, 1, 8, 8))
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    assert M.predict_proba(r.model, images(5)[0]).shape == (5, 3)


# every mode from a pretrained trunk, and the scratch baseline (the first mode from random init)
RESUME = [(b, M.list_strategies()[0], m) for b, m in BACKBONE_MODE] + [
    (b, None, M.list_transfer_modes(b)[0]) for b in M.list_backbones()
]


@pytest.mark.parametrize("backbone, strategy, mode", RESUME)
def test_fit_resume_is_exact(tmp_path, backbone, strategy, mode):
    plain = fit(backbone, strategy, mode)
    state = trunk(backbone, strategy).backbone_state if strategy else None
    kw = fit_kw(backbone, mode, state)
    with pytest.raises(Crash):
        M.fit_target(**kw, checkpoint_dir=tmp_path, on_epoch_end=crash_after(1))
    resumed = M.fit_target(**kw, checkpoint_dir=tmp_path)
    assert resumed.resumed_from == 1
    assert same_state(plain.model.state_dict(), resumed.model.state_dict())
    assert no_seconds(plain.history) == no_seconds(resumed.history)
    assert (plain.best_epoch, plain.best_val_acc) == (resumed.best_epoch, resumed.best_val_acc)
    assert no_seconds(plain.probe_history) == no_seconds(resumed.probe_history)
    best = M.load_model(tmp_path)
    assert same_state(best.state_dict(), plain.model.state_dict())
