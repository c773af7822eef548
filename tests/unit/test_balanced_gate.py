"""`--metric`: an imbalanced target where the transfer candidate drops the rare class. Plain
accuracy promotes it; balanced accuracy (auto, beyond the stated ratio) refuses it, and the
model card names the class."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.test_protocol import _record, _scores
from warmstart import promotion
from warmstart.contracts import SCRATCH
from warmstart.promotion import metric
from warmstart.promotion.stats import seed_t_interval
from warmstart.reports import model_card

SEEDS = [1000, 1001, 1002, 1003, 1004]
# test split of a 3-class target with class 2 rare (UCI-digits-like: 60, 60 and 8 images)
Y = np.array([0] * 60 + [1] * 60 + [2] * 8)


def _correct(p_common: float, p_rare: float, seed: int) -> np.ndarray:
    """Seeds × examples: right with probability p_common on classes 0-1, p_rare on class 2."""
    rng = np.random.default_rng(seed)
    p = np.where(Y == 2, p_rare, p_common)
    return rng.random((len(SEEDS), len(Y))) < p


def test_balanced_weights_average_the_per_class_accuracies():
    w = metric.weights("balanced_accuracy", Y, 3)
    assert w.sum() == pytest.approx(1.0)
    right = (Y != 2).astype(float)  # every common image right, every rare one wrong
    assert float(right @ w) == pytest.approx(2 / 3)
    assert float(right.mean()) == pytest.approx(120 / 128)
    assert metric.weights("accuracy", Y, 3) is None


def test_auto_is_balanced_beyond_the_stated_ratio():
    assert metric.imbalance(Y, 3) == 7.5
    assert metric.resolve("auto", Y, 3) == "balanced_accuracy"
    even = np.array([0] * 10 + [1] * 12 + [2] * 15)  # 1.5x: not beyond
    assert metric.resolve("auto", even, 3) == "accuracy"
    assert metric.resolve("accuracy", Y, 3) == "accuracy"


def test_candidate_dropping_the_rare_class_passes_accuracy_but_not_balanced_accuracy():
    cand = _correct(0.99, 0.0, seed=1)  # better on the common classes, never the rare one
    base = _correct(0.85, 0.9, seed=2)
    arm = _scores("supervised/finetune", cand, SEEDS, _record())
    scratch = _scores(SCRATCH, base, SEEDS)

    plain = promotion.decide(arm, scratch)
    assert plain.passed and plain.delta_vs_scratch["ci_low"] > 0

    w = metric.weights(metric.resolve("auto", Y, 3), Y, 3)
    balanced = promotion.decide(arm, scratch, weights=w)
    assert not balanced.passed and balanced.rule == "below-margin"
    expected = seed_t_interval(cand, base, weights=w)
    assert balanced.delta_vs_scratch["mean_diff"] == pytest.approx(expected["mean_diff"])
    per_class = [(cand[:, Y == c].mean() - base[:, Y == c].mean()) for c in range(3)]
    assert expected["mean_diff"] == pytest.approx(np.mean(per_class))
    assert "balanced accuracy" in balanced.reason

    rows = [
        {
            "class": str(c),
            "accuracy": cand[0, Y == c].mean(),
            "scratch_accuracy": base[:, Y == c].mean(),
        }
        for c in range(3)
    ]
    assert [name.split(" ")[0] for name in model_card.weaker_classes(rows)] == ["`2`"]
