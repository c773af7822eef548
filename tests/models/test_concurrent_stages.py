"""Stages training at once in one process (the flow's worker threads, a CPU slot each) get the
numbers they get alone: same weights, same history, whatever runs beside them. The global RNGs
are seeded and used under ``device.GLOBAL_RNG``; training draws only from each stage's own
generator."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from warmstart import models as M
from warmstart.models import device

CPU = {"num_threads": 1, "device": "cpu"}


def _pretrain(strategy, digit_split):
    _, _, (xs, ys) = digit_split
    r = M.pretrain(
        strategy,
        backbone="convnet-s",
        in_channels=1,
        image_size=(8, 8),
        images=xs[:300],
        labels=ys[:300],
        num_classes=10,
        config=M.PretrainConfig(epochs=1, **CPU),
    )
    return [{k: v for k, v in h.items() if k != "seconds"} for h in r.history], r.backbone_state


@pytest.fixture(scope="module")
def pretrained(digit_split):
    return _pretrain("supervised", digit_split)[1]


def _jobs(pretrained, digit_split):
    (xt, yt), (xv, yv), _ = digit_split
    pick = np.concatenate([np.where(yt == c)[0][:4] for c in range(10)])
    common = {
        "backbone": "convnet-s",
        "in_channels": 1,
        "image_size": (8, 8),
        "num_classes": 10,
        "train": (xt[pick], yt[pick]),
        "val": (xv[:100], yv[:100]),
    }
    jobs = []
    for seed, (mode, init) in enumerate(
        [
            ("finetune", None),
            ("lp_ft", pretrained),
            ("linear_probe", pretrained),
            ("finetune", None),
        ]
    ):
        cfg = M.TrainConfig(epochs=2, min_steps_per_epoch=4, seed=seed, **CPU)
        jobs.append(dict(common, mode=mode, init_state=init, config=cfg))
    return jobs


def _outcome(job):
    r = M.fit_target(**job)
    rows = [{k: v for k, v in h.items() if k != "seconds"} for h in r.history]
    return rows, {k: t.clone() for k, t in r.model.state_dict().items()}


def test_stages_in_parallel_threads_match_the_same_stages_alone(pretrained, digit_split):
    jobs = _jobs(pretrained, digit_split)
    alone = [_outcome(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=2) as pool:  # two slots, one thread each
        together = list(pool.map(_outcome, jobs))
    for (rows_a, state_a), (rows_b, state_b) in zip(alone, together, strict=True):
        assert rows_a == rows_b
        assert state_a.keys() == state_b.keys()
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    # and the seeds really differ: the comparison above could have failed
    assert not torch.equal(alone[0][1]["head.weight"], alone[3][1]["head.weight"])


def test_cpu_slots_split_the_cores(monkeypatch):
    monkeypatch.delenv("WARMSTART_CPU_SLOTS", raising=False)
    assert (device.cpu_slots(2), device.stage_threads(2)) == (2, 1)
    monkeypatch.setenv("WARMSTART_CPU_SLOTS", "1")  # one stage at a time, every core for it
    assert (device.cpu_slots(2), device.stage_threads(2)) == (1, 2)
    monkeypatch.setenv("WARMSTART_CPU_SLOTS", "3")  # more slots than cores: one thread each
    assert (device.cpu_slots(2), device.stage_threads(2)) == (3, 1)


def test_pretrainings_in_parallel_threads_match_the_same_pretrainings_alone(digit_split):
    strategies = ["supervised", "autoencoder", "gan"]
    alone = [_pretrain(s, digit_split) for s in strategies]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(lambda s: _pretrain(s, digit_split), strategies))
    for (rows_a, state_a), (rows_b, state_b) in zip(alone, together, strict=True):
        assert rows_a == rows_b
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
