"""Checkpoints: safetensors + JSON, exact resume, incompatible-checkpoint and divergence errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from warmstart import models as M
from warmstart.models import loop as loop

CPU = {"num_threads": 1, "device": "cpu"}


class Crash(Exception):
    pass


def _crash_after(k):
    def cb(epoch, metrics, path):
        if epoch == k:
            raise Crash(epoch)

    return cb


@pytest.fixture
def data(digit_split):
    (xt, yt), (xv, yv), _ = digit_split
    return (xt[:60], yt[:60]), (xv[:60], yv[:60])


@pytest.mark.parametrize("mode", ["finetune", "lp_ft"])
def test_fit_resume_gives_identical_weights(tmp_path, data, mode):
    train, val = data
    cfg = M.TrainConfig(epochs=3, min_steps_per_epoch=4, batch_size=16, **CPU)
    common = {
        "backbone": "convnet-s",
        "init_state": None,
        "mode": mode,
        "in_channels": 1,
        "image_size": (8, 8),
        "num_classes": 10,
        "train": train,
        "val": val,
        "config": cfg,
    }
    full = M.fit_target(**common, checkpoint_dir=tmp_path / "a")
    with pytest.raises(Crash):
        M.fit_target(**common, checkpoint_dir=tmp_path / "b", on_epoch_end=_crash_after(1))
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert meta["epoch"] == 1 and meta["backbone"] == "convnet-s"
    resumed = M.fit_target(**common, checkpoint_dir=tmp_path / "b")
    assert full.resumed_from is None and resumed.resumed_from == 1
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["val_loss"] for h in full.history] == [h["val_loss"] for h in resumed.history]
    assert full.best_epoch == resumed.best_epoch
    # the latest checkpoint equals too (not only the best weights)
    la = M.load_checkpoint(tmp_path / "a").weights
    lb = M.load_checkpoint(tmp_path / "b").weights
    assert all(torch.equal(la[k], lb[k]) for k in la)
    # a finished run is not retrained
    again = M.fit_target(**common, checkpoint_dir=tmp_path / "a")
    assert again.resumed_from == 3 and len(again.history) == 3
    assert all(torch.equal(again.model.state_dict()[k], a[k]) for k in a)


def test_only_latest_and_best_kept(tmp_path, data):
    train, val = data
    cfg = M.TrainConfig(epochs=4, min_steps_per_epoch=2, batch_size=16, **CPU)
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
        checkpoint_dir=tmp_path,
    )
    names = sorted(p.name for p in tmp_path.iterdir())
    expect = {
        f"epoch-{r.best_epoch:03d}.safetensors",
        "epoch-004.safetensors",
        "epoch-004.state.safetensors",
        "meta.json",
    }
    assert set(names) == expect
    best = M.load_model(tmp_path)
    assert all(torch.equal(best.state_dict()[k], v) for k, v in r.model.state_dict().items())


def test_pretrain_resume_identical(tmp_path, digits):
    x, _ = digits
    cfg = M.PretrainConfig(epochs=3, min_steps_per_epoch=2, batch_size=16, **CPU)
    common = {
        "backbone": "convnet-s",
        "in_channels": 1,
        "image_size": (8, 8),
        "images": x[:48],
        "config": cfg,
    }
    full = M.pretrain("gan", **common, checkpoint_dir=tmp_path / "a")
    with pytest.raises(Crash):
        M.pretrain("gan", **common, checkpoint_dir=tmp_path / "b", on_epoch_end=_crash_after(2))
    resumed = M.pretrain("gan", **common, checkpoint_dir=tmp_path / "b")
    assert resumed.resumed_from == 2 and resumed.epochs_done == 3
    assert all(
        torch.equal(full.backbone_state[k], resumed.backbone_state[k]) for k in full.backbone_state
    )
    assert np.array_equal(full.artifacts["gan_samples"], resumed.artifacts["gan_samples"])


def test_incompatible_checkpoint_names_both_sides(tmp_path, data):
    train, val = data
    cfg = M.TrainConfig(epochs=1, min_steps_per_epoch=1, **CPU)
    common = {
        "init_state": None,
        "mode": "finetune",
        "image_size": (8, 8),
        "config": cfg,
        "checkpoint_dir": tmp_path,
    }
    M.fit_target(
        backbone="convnet-s", in_channels=1, num_classes=10, train=train, val=val, **common
    )
    rgb = (np.repeat(train[0], 3, axis=1), train[1])
    rgb_val = (np.repeat(val[0], 3, axis=1), val[1])
    with pytest.raises(M.CheckpointError) as e:
        M.fit_target(
            backbone="resnet18", in_channels=3, num_classes=10, train=rgb, val=rgb_val, **common
        )
    msg = str(e.value)
    assert "backbone='convnet-s'" in msg and "backbone='resnet18'" in msg
    assert "in_channels=1" in msg and "in_channels=3" in msg
    with pytest.raises(M.CheckpointError, match="config.lr=0.003.*config.lr=0.1"):
        M.fit_target(
            backbone="convnet-s",
            in_channels=1,
            num_classes=10,
            train=train,
            val=val,
            **{**common, "config": M.TrainConfig(epochs=1, min_steps_per_epoch=1, lr=0.1)},
        )


def test_init_state_mismatch_names_both_sides():
    rgb = M.get_backbone("convnet-s", in_channels=3, num_classes=2, image_size=(8, 8))
    grey = M.get_backbone("convnet-s", in_channels=1, num_classes=2, image_size=(8, 8))
    with pytest.raises(
        M.CheckpointError, match=r"stage1.0.weight: state \(32, 3, 3, 3\) vs model \(32, 1, 3, 3\)"
    ):
        M.load_trunk(grey, rgb.trunk_state_dict())


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path, data, monkeypatch):
    train, val = data
    real = loop.train_one_epoch

    def poisoned(model, *a, step0=0, **kw):  # fault injection: NaN weights from epoch 2 on
        if step0 > 0:
            with torch.no_grad():
                model.stage1[0].weight.fill_(float("nan"))
        return real(model, *a, step0=step0, **kw)

    monkeypatch.setattr(loop, "train_one_epoch", poisoned)
    cfg = M.TrainConfig(epochs=3, min_steps_per_epoch=2, batch_size=16, **CPU)
    with pytest.raises(M.TrainingError, match=r"nan in epoch 2.*last good checkpoint \(epoch 1\)"):
        M.fit_target(
            backbone="convnet-s",
            init_state=None,
            mode="finetune",
            in_channels=1,
            image_size=(8, 8),
            num_classes=10,
            train=train,
            val=val,
            config=cfg,
            checkpoint_dir=tmp_path,
        )
    ck = M.load_checkpoint(tmp_path)
    assert ck.meta["epoch"] == 1
    assert all(torch.isfinite(v.float()).all() for v in ck.weights.values())


def test_huge_lr_diverges_with_training_error(data):
    train, val = data
    cfg = M.TrainConfig(epochs=2, min_steps_per_epoch=3, lr=1e30, warmup_frac=0.0, **CPU)
    with pytest.raises(M.TrainingError, match="lower TrainConfig.lr"):
        M.fit_target(
            backbone="convnet-s",
            init_state=None,
            mode="finetune",
            in_channels=1,
            image_size=(8, 8),
            num_classes=10,
            train=train,
            val=val,
            config=cfg,
        )


def test_no_pickle_in_checkpoint(tmp_path, data):
    train, val = data
    M.fit_target(
        backbone="convnet-s",
        init_state=None,
        mode="finetune",
        in_channels=1,
        image_size=(8, 8),
        num_classes=10,
        train=train,
        val=val,
        config=M.TrainConfig(epochs=1, min_steps_per_epoch=1, **CPU),
        checkpoint_dir=tmp_path,
    )
    for p in tmp_path.iterdir():
        head = p.read_bytes()[:2]
        assert head != b"\x80\x04" and not p.name.endswith((".pt", ".pth", ".pkl")), p
    json.loads((tmp_path / "meta.json").read_text())


def test_pretrain_divergence_names_the_strategy_config(data):
    (x, y), _ = data
    cfg = M.PretrainConfig(
        epochs=2,
        min_steps_per_epoch=3,
        strategy=M.SupervisedConfig(lr=1e30, warmup_frac=0.0),
        **CPU,
    )
    with pytest.raises(
        M.TrainingError,
        match=r"^supervised pretraining: loss became nan in epoch 1; no checkpoint written; "
        r"lower the strategy's lr: PretrainConfig\(strategy=SupervisedConfig\(lr=\.\.\.\)\)$",
    ):
        M.pretrain(
            "supervised",
            backbone="convnet-s",
            in_channels=1,
            image_size=(8, 8),
            images=x,
            labels=y,
            num_classes=10,
            config=cfg,
        )
