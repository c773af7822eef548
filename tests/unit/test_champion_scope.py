"""Which champion is comparable, what the registered model is called, and a verdict blocked by
the leakage guard (pure: no services)."""

from __future__ import annotations

import re

import numpy as np

from warmstart import promotion
from warmstart.contracts import SCRATCH, ArmScores, DatasetRef
from warmstart.promotion import Champion
from warmstart.promotion.registry import model_name, not_comparable


def _arm(name: str, correct: np.ndarray) -> ArmScores:
    seeds = list(range(len(correct)))
    return ArmScores(
        arm=name,
        strategy=None if name == SCRATCH else name.split("/")[0],
        mode="finetune",
        seeds=seeds,
        val_acc=[0.5] * len(seeds),
        test_acc=[float(r.mean()) for r in correct],
        correct=correct.tolist(),
        pred=[[0] * correct.shape[1]] * len(seeds),
    )


rng = np.random.default_rng(0)
STRONG = _arm("supervised/finetune", rng.random((3, 600)) < 0.9)
WEAK = _arm(SCRATCH, rng.random((3, 600)) < 0.6)


def _ref(name: str, spec: str, size=(8, 8), channels=1) -> DatasetRef:
    return DatasetRef("ab" * 32, "s3://b/d", name, spec, 10, channels, size, 100)


def test_a_champion_from_another_split_is_not_compared_and_does_not_block():
    why = not_comparable(
        {"target_dataset_hash": "t" * 64, "split_hash": "a" * 64}, "t" * 64, "b" * 64
    )
    assert why == (
        "trained on split aaaaaaaaaaaa, this run's is bbbbbbbbbbbb: "
        "its training images may be in this test split"
    )
    # a champion that would win on these test images, were it compared
    perfect = Champion("3", correct=np.ones(600, dtype=bool), not_applicable=why)
    d = promotion.decide(STRONG, WEAK, champion=perfect)
    assert d.passed and d.rule == "promoted" and d.vs_champion is None
    assert f"champion v3 not compared ({why})" in d.reason
    assert d.champion_version == "3" and d.champion_not_applicable == why
    assert d.tags()["gate_champion_not_applicable"] == why
    assert f"| vs champion (v3) | — | — | — | — | not applicable: {why} | yes |" in d.to_markdown()
    compared = promotion.decide(STRONG, WEAK, champion=Champion("3", correct=np.ones(600, bool)))
    assert compared.rule == "worse-than-champion" and not compared.passed


def test_comparable_only_with_the_same_target_data_and_split():
    tags = {"target_dataset_hash": "t" * 64, "split_hash": "s" * 64}
    assert not_comparable(tags, "t" * 64, "s" * 64) is None
    assert not_comparable(tags, "u" * 64, "s" * 64) == (
        "trained on target data tttttttttttt, this run's is uuuuuuuuuuuu"
    )
    assert not_comparable({}, "t" * 64, "s" * 64).startswith("trained on target data unknown")


def test_a_blocked_candidate_is_never_promoted_and_the_verdict_says_why():
    line = "leakage: source shares 40 of 40 test images with the target (exact 40, near 0)"
    d = promotion.decide(STRONG, WEAK, blocked=line)
    assert not d.passed and d.verdict == "not promoted" and d.rule == "blocked"
    assert d.reason.startswith(line + "; supervised/finetune vs scratch +")
    assert "not promoted" not in d.reason
    assert d.delta_vs_scratch["ci_low"] > 0.2  # it would have passed on the numbers


def test_model_names_never_mix_shapes_or_preprocessing():
    small = model_name(_ref("mnist-5k", "builtin:mnist-5k?size=8x8"))
    big = model_name(_ref("mnist-5k", "builtin:mnist-5k", size=(28, 28)))
    cropped = model_name(_ref("mnist-5k", "builtin:mnist-5k?size=8x8&crop=content"))
    rgb = model_name(_ref("mnist-5k", "builtin:mnist-5k?size=8x8&channels=3", channels=3))
    assert re.fullmatch(r"warmstart-mnist-5k-8x8-1ch-[0-9a-f]{6}", small), small
    assert big.startswith("warmstart-mnist-5k-28x28-1ch-")
    assert cropped.startswith("warmstart-mnist-5k-8x8-1ch-") and cropped != small
    assert rgb.startswith("warmstart-mnist-5k-8x8-3ch-")
    assert len({small, big, cropped, rgb}) == 4
    # the name depends on what the model sees, not on how the spec was written
    assert model_name(_ref("mnist-5k", "builtin:mnist-5k?size=8x8")) == small
    assert model_name(_ref("uci-digits-5-9", "builtin:uci-digits?classes=5-9")).startswith(
        "warmstart-uci-digits-5-9-8x8-1ch-"
    )
