"""`--metric`: an imbalanced target where the transfer candidate drops the rare class. Plain
accuracy promotes it; balanced accuracy (auto, beyond the stated ratio) refuses it, and the
model card names the class."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.test_protocol import _record, _scores
from warmstart import promotion
from warmstart.contracts import SCRATCH, Evaluation
from warmstart.errors import DataError
from warmstart.promotion import classes, metric, recompute
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
    assert "| vs scratch (balanced accuracy) | " in balanced.to_markdown()
    assert "| vs scratch | " in plain.to_markdown() and "(balanced" not in plain.to_markdown()

    rows = [
        {
            "class": str(c),
            "accuracy": cand[0, Y == c].mean(),
            "scratch_accuracy": base[:, Y == c].mean(),
        }
        for c in range(3)
    ]
    assert [name.split(" ")[0] for name in model_card.weaker_classes(rows)] == ["`2`"]


def _evaluation(cand: np.ndarray, base: np.ndarray) -> Evaluation:
    """The confirmation evaluation of the scenario: the candidate (predicting class 0 whenever
    wrong) and scratch on SEEDS, the rare class 2 last."""
    arm = _scores("supervised/finetune", cand, SEEDS, _record())
    scratch = _scores(SCRATCH, base, SEEDS)
    for a, correct in ((arm, cand), (scratch, base)):
        a.pred[:] = np.where(correct, Y, (Y + 1) % 3).tolist()
    return Evaluation({arm.arm: arm, SCRATCH: scratch}, Y.tolist(), list(range(128)), list("abc"))


def test_recompute_verdict_reproduces_a_balanced_accuracy_gate():
    cand, base = _correct(0.99, 0.0, seed=1), _correct(0.85, 0.9, seed=2)
    evaluation = _evaluation(cand, base)
    arm, scratch = evaluation.arms["supervised/finetune"], evaluation.arms[SCRATCH]
    w = metric.weights("balanced_accuracy", Y, 3)
    gate = promotion.decide(arm, scratch, weights=w)
    assert gate.delta_vs_scratch["metric"] == "balanced_accuracy"
    frame = recompute.predictions_frame(
        evaluation, "confirmation", (arm.arm, SCRATCH), "balanced_accuracy"
    )
    got = promotion.recompute_verdict(frame)
    assert {k: got[k] for k in gate.delta_vs_scratch} == gate.delta_vs_scratch
    assert got["ci_high"] < 0 < promotion.decide(arm, scratch).delta_vs_scratch["ci_low"]

    # the same rows under plain accuracy: the accuracy gate's numbers, which promote
    plain = promotion.recompute_verdict(frame, metric="accuracy")
    accuracy_gate = promotion.decide(arm, scratch).delta_vs_scratch
    assert {k: plain[k] for k in accuracy_gate} == accuracy_gate
    assert plain["metric"] == "accuracy" and plain["ci_low"] > 0

    # a table written before the metric was recorded reads as accuracy
    assert promotion.recompute_verdict(frame.drop(columns=["metric"]))["ci_low"] > 0
    with pytest.raises(DataError, match="metric='f1'"):
        promotion.recompute_verdict(frame, metric="f1")


def test_a_class_below_scratch_by_more_than_the_margin_is_named_in_the_verdict():
    cand, base = _correct(0.99, 0.0, seed=1), _correct(0.85, 0.9, seed=2)
    evaluation = _evaluation(cand, base)
    arm, scratch = evaluation.arms["supervised/finetune"], evaluation.arms[SCRATCH]
    drops = classes.gate_class_drops(evaluation, arm.arm)
    rare = base[:, Y == 2].mean()
    assert drops == [
        {
            "class": "c",
            "test_images": 8,
            "accuracy": 0.0,
            "scratch_accuracy": pytest.approx(rare),
            "diff": pytest.approx(-rare),
        }
    ]
    decision = promotion.decide(arm, scratch, class_drops=drops)
    assert decision.passed  # named whatever the verdict: a warning, not a rule
    line = f"class c: 0% vs scratch {100 * rare:.0f}% ({-100 * rare:+.0f} points, 8 test images)"
    assert f"Below scratch by more than 10 points: {line}." in decision.reason
    assert decision.to_dict()["class_drops"] == drops
    assert "Below scratch" not in promotion.decide(arm, scratch).reason


def test_the_class_margin_is_strict_and_averages_the_seeds():
    y = [0] * 10 + [1] * 10
    scratch = [y, y]  # every image right on both seeds
    at_margin = [[1] + y[1:], y]  # class 0: 90% and 100% -> 95%: 5 points below
    assert classes.class_drops(y, at_margin, scratch, ["a", "b"]) == []
    one_seed = [[1] + y[1:], [1, 1] + y[2:]]  # class 0: 90% and 80% -> 85%: 15 points below
    (row,) = classes.class_drops(y, one_seed, scratch, ["a", "b"])
    assert (row["class"], row["accuracy"], row["diff"]) == ("a", 0.85, pytest.approx(-0.15))
    ten = [[1] + y[1:]] * 2  # exactly 10 points below: not more than the margin
    assert classes.class_drops(y, ten, scratch, ["a", "b"]) == []
