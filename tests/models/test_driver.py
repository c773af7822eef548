"""The epoch driver on its own, with a minimal EpochTask (a linear regression): checkpoint every
epoch, exact resume incl. optimiser and RNG state, `prepare(fresh)`, the divergence stop naming
the task and its fix, and the epoch callback."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from warmstart import models as M
from warmstart.models.driver import EpochTask, run_epochs

CFG = M.RunConfig(epochs=4, seed=3, device="cpu", num_threads=1)


class Regression(EpochTask):
    label = "toy regression"
    hint = "lower Regression.lr"

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__(
            {"kind": "toy", **dict.fromkeys(M.driver.SHAPE_KEYS), "config": {"lr": lr}}
        )
        torch.manual_seed(0)
        self.net = torch.nn.Linear(3, 1)
        self.modules = {"net": self.net}
        self.lr, self.fresh = lr, None

    def prepare(self, fresh: bool) -> None:
        self.fresh = fresh
        sgd = torch.optim.SGD(self.net.parameters(), lr=self.lr, momentum=0.9)
        self.optimizers = {"sgd": sgd}

    def train_epoch(self, epoch, gen):
        x = torch.randn(16, 3, generator=gen)  # the data generator is checkpointed too
        loss = ((self.net(x).squeeze(1) - x.sum(1)) ** 2).mean()
        self.optimizers["sgd"].zero_grad()
        loss.backward()
        self.optimizers["sgd"].step()
        return {"loss": loss.item(), "images": 16}


def test_resume_after_a_crash_is_exact(tmp_path):
    full = Regression()
    p_full = run_epochs(full, CFG)
    assert full.fresh is True and p_full.resumed_from is None and p_full.images == 64
    seen = []

    def crash(epoch, row, path):
        seen.append((epoch, path.name))
        if epoch == 2:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_epochs(Regression(), CFG, tmp_path, crash)
    assert seen == [(1, "epoch-001.safetensors"), (2, "epoch-002.safetensors")]
    task = Regression()
    p = run_epochs(task, CFG, tmp_path)
    assert task.fresh is False and p.resumed_from == 2 and p.epoch == 4 and p.images == 64
    assert torch.equal(task.net.weight, full.net.weight) and torch.equal(
        task.net.bias, full.net.bias
    )
    assert [r["loss"] for r in p.history] == [r["loss"] for r in p_full.history]
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "epoch-004.safetensors",
        "epoch-004.state.safetensors",
        "meta.json",
    ]
    with pytest.raises(M.CheckpointError, match=r"config\.lr=0\.05.*config\.lr=0\.1"):
        run_epochs(Regression(lr=0.1), CFG, tmp_path)


def test_divergence_stops_with_the_task_label_and_hint(tmp_path):
    task = Regression(lr=10.0)
    with pytest.raises(M.TrainingError) as e:
        run_epochs(task, M.RunConfig(epochs=50, seed=0), tmp_path)
    msg = str(e.value)
    assert msg.startswith("toy regression: loss became ") and msg.endswith("lower Regression.lr")
    epoch = int(msg.split(" in epoch ")[1].split(";")[0])
    assert f"last good checkpoint (epoch {epoch - 1}) kept in {tmp_path}" in msg
    meta = M.read_meta(tmp_path)
    assert meta["epoch"] == epoch - 1 and all(math.isfinite(r["loss"]) for r in meta["history"])
    assert np.isfinite(M.load_checkpoint(tmp_path).weights["net.weight"].numpy()).all()
