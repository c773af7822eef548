"""Extending models/ from outside: a strategy with its own config and two transfer modes are
registered from this file alone (one decorator each), run through `pretrain` / `fit_target` by
name — with checkpoints, resume and config checks — and unregistered afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from warmstart import models as M
from warmstart.models.registry import STRATEGIES, TRANSFER_MODES

CPU = {"device": "cpu", "num_threads": 1}


@dataclass(frozen=True)
class RotationConfig(M.ConfigBase):
    """The toy strategy's own hyper-parameters."""

    lr: float = 0.05
    momentum: float = 0.9
    batch: int = 32


@contextmanager
def toy_strategy() -> Iterator[type[M.Strategy]]:
    """A self-supervised toy strategy: predict which of 4 quarter-turns an image was given."""

    @M.register_strategy("toy-rotation")
    class Rotation(M.Strategy):
        config_class = RotationConfig

        def build(self) -> None:
            self.model = self.build_backbone(num_classes=4)
            c = self.config
            self.opt = torch.optim.SGD(self.model.parameters(), lr=c.lr, momentum=c.momentum)
            self.modules, self.optimizers = {"model": self.model}, {"sgd": self.opt}

        def train_epoch(self, x, y, *, gen, epoch):
            assert y is None  # needs_labels is False: pretrain drops the labels
            self.model.train()
            total = torch.zeros(())
            for _ in range(self.steps):
                idx = torch.randint(0, len(x), (self.config.batch,), generator=gen)
                turns = torch.randint(0, 4, (self.config.batch,), generator=gen)
                xb = torch.stack(
                    [
                        torch.rot90(x[i].float() / 255, int(k), (1, 2))
                        for i, k in zip(idx, turns, strict=True)
                    ]
                )
                loss = F.cross_entropy(self.model(xb), turns)
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                total += loss.detach()
            return {"loss": float(total) / self.steps, "images": self.steps * self.config.batch}

        def backbone_state(self):
            return self.model.trunk_state_dict()

    try:
        yield Rotation
    finally:
        STRATEGIES.unregister("toy-rotation")


@contextmanager
def toy_modes() -> Iterator[tuple[type[M.TransferMode], ...]]:
    """Two toy transfer modes: a closed-form nearest-class-mean head on the frozen trunk (the bare
    TransferMode contract) and `finetune` with the whole trunk frozen (extending Finetune)."""

    @M.register_transfer_mode("toy-ncm")
    class NearestClassMean(M.TransferMode):
        def epochs(self, config):
            return 1

        def setup(self, run, fresh):
            M.freeze(run.model)

        def train_epoch(self, run, epoch, gen):
            x, y = run.train
            f = M.extract_features(run.model, x)
            mu = torch.stack([f[y == c].mean(0) for c in range(run.num_classes)])
            head = torch.nn.Linear(f.shape[1], run.num_classes)
            with torch.no_grad():  # argmax of -|f - mu|² = argmax of 2 f·mu - |mu|²
                head.weight.copy_(2 * mu)
                head.bias.copy_(-(mu * mu).sum(1))
            run.model.head = head
            tr, va = M.evaluate(run.model, *run.train), M.evaluate(run.model, *run.val)
            return {
                "train_loss": tr["loss"],
                "train_acc": tr["acc"],
                "val_loss": va["loss"],
                "val_acc": va["acc"],
                "images": len(x),
            }

    @M.register_transfer_mode("toy-head-only")
    class HeadOnly(M.Finetune):
        def setup(self, run, fresh):
            M.freeze(run.model)

    try:
        yield NearestClassMean, HeadOnly
    finally:
        TRANSFER_MODES.unregister("toy-ncm")
        TRANSFER_MODES.unregister("toy-head-only")


@pytest.fixture
def rotation():
    with toy_strategy() as cls:
        yield cls


@pytest.fixture
def modes():
    with toy_modes() as classes:
        yield classes


def _pretrain(x, config, **kw):
    return M.pretrain(
        "toy-rotation",
        backbone=M.list_backbones()[0],
        in_channels=1,
        image_size=(8, 8),
        images=x,
        labels=np.zeros(len(x), np.int64),  # ignored: the strategy needs no labels
        config=config,
        **kw,
    )


def test_toy_strategy_pretrains_resumes_and_checks_its_config(rotation, digits, tmp_path):
    x, _ = digits
    assert (
        "toy-rotation" in M.list_strategies() and not M.strategy_class("toy-rotation").needs_labels
    )
    cfg = M.PretrainConfig(epochs=3, min_steps_per_epoch=8, strategy=RotationConfig(), **CPU)
    full = _pretrain(x[:256], cfg)
    losses = [row["loss"] for row in full.history]
    assert losses[-1] < losses[0] and np.isfinite(losses).all(), losses
    assert full.artifacts == {} and full.images_per_second > 0

    class Crash(Exception):
        pass

    def crash(epoch, row, path):
        if epoch == 2:
            raise Crash

    with pytest.raises(Crash):
        _pretrain(x[:256], cfg, checkpoint_dir=tmp_path, on_epoch_end=crash)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["config"]["strategy"] == {"lr": 0.05, "momentum": 0.9, "batch": 32}
    assert "sgd" in meta["optimizers"] and meta["kind"] == "pretrain:toy-rotation"
    resumed = _pretrain(x[:256], cfg, checkpoint_dir=tmp_path)
    assert resumed.resumed_from == 2
    assert all(torch.equal(full.backbone_state[k], v) for k, v in resumed.backbone_state.items())
    # the strategy's own config is part of what a checkpoint must match
    other = M.PretrainConfig(
        epochs=3, min_steps_per_epoch=8, strategy=RotationConfig(lr=0.1), **CPU
    )
    with pytest.raises(
        M.CheckpointError, match=r"config\.strategy\.lr=0\.05.*config\.strategy\.lr=0\.1"
    ):
        _pretrain(x[:256], other, checkpoint_dir=tmp_path)
    # None takes the strategy's defaults; another strategy's config is refused in one line
    default = _pretrain(x[:256], M.PretrainConfig(epochs=3, min_steps_per_epoch=8, **CPU))
    assert all(torch.equal(full.backbone_state[k], v) for k, v in default.backbone_state.items())
    with pytest.raises(M.ModelError, match="takes RotationConfig"):
        _pretrain(x[:64], M.PretrainConfig(epochs=1, strategy=M.GANConfig(), **CPU))


def test_registration_is_undone():
    strategies, modes = M.list_strategies(), M.list_transfer_modes()
    with toy_strategy(), toy_modes():
        assert M.list_strategies() == [*strategies, "toy-rotation"]
        assert M.list_transfer_modes() == [*modes, "toy-ncm", "toy-head-only"]
    assert M.list_strategies() == strategies and M.list_transfer_modes() == modes
    with pytest.raises(M.UnknownNameError):
        M.transfer_mode_class("toy-ncm")
    with pytest.raises(M.UnknownNameError, match="unknown strategy 'toy-rotation'"):
        STRATEGIES.unregister("toy-rotation")


def test_toy_modes_run_through_fit_target(rotation, modes, digits, digit_split, tmp_path):
    x, _ = digits
    backbone = M.list_backbones()[0]
    assert {"toy-ncm", "toy-head-only"} <= set(M.list_transfer_modes(backbone))
    pre = _pretrain(x, M.PretrainConfig(epochs=2, min_steps_per_epoch=8, **CPU)).backbone_state
    (xt, yt), val, _ = digit_split
    common = {
        "backbone": backbone,
        "init_state": pre,
        "in_channels": 1,
        "image_size": (8, 8),
        "num_classes": 10,
        "train": (xt, yt),
        "val": val,
        "config": M.TrainConfig(epochs=3, min_steps_per_epoch=5, **CPU),
    }
    ncm = M.fit_target(mode="toy-ncm", **common)
    assert len(ncm.history) == 1 and ncm.best_epoch == 1
    assert ncm.best_val_acc > 0.5, ncm.best_val_acc  # chance is 0.1
    state = ncm.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in pre.items())  # trunk (and BN stats) untouched

    head = M.fit_target(mode="toy-head-only", checkpoint_dir=tmp_path, **common)
    assert [row["epoch"] for row in head.history] == [1, 2, 3]
    state = head.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in pre.items())
    assert M.load_checkpoint(tmp_path).meta["mode"] == "toy-head-only"
    again = M.fit_target(mode="toy-head-only", checkpoint_dir=tmp_path, **common)
    assert again.resumed_from == 3 and again.best_val_acc == head.best_val_acc


def test_mode_registration_rules(modes):
    with pytest.raises(M.ModelError, match="already registered"):
        M.register_transfer_mode("toy-ncm")(type("X", (M.TransferMode,), {}))
    with pytest.raises(M.ModelError, match="without '='"):
        M.register_transfer_mode("a=b")
    with pytest.raises(M.UnknownNameError, match="toy-ncm, toy-head-only"):
        M.get_transfer_mode("toy-nope", M.list_backbones()[0])
