"""The gate's protocol (issue 14): fresh-seed confirmation (the gate's two-way interval and its
calibration are in test_interval.py), the seed-level t interval it replaced, scratch's equal search
chosen on validation, the k-shot draw per seed and the labels the verdict reports. Pure numpy
and plain functions: no services."""

from __future__ import annotations

import numpy as np
import pytest

from warmstart import contracts, promotion
from warmstart.contracts import SCRATCH, TARGET_POOL_CONTROL, ArmSpec, is_candidate
from warmstart.data.splits import Splits, capped_val, seed_train
from warmstart.errors import DataError
from warmstart.params import PipelineParams
from warmstart.promotion import protocol
from warmstart.promotion.stats import seed_t_interval, two_way_interval
from warmstart.stages.training import arm_specs, confirmation_specs, scratch_grid

# ------------------------------------------------------------------ intervals


def test_seed_t_interval_on_a_hand_checked_case():
    # per-seed accuracy differences: 0.5, 0.25, 0.0 -> mean 0.25, sd 0.25, t(2) = 4.3027
    cand = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]], dtype=bool)
    base = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=bool)
    res = seed_t_interval(cand, base)
    half = 4.302652729749462 * 0.25 / np.sqrt(3)
    assert res["mean_diff"] == pytest.approx(0.25)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((0.25 - half, 0.25 + half))
    assert (res["seeds"], res["n"], res["df"], res["method"]) == (3, 4, 2, "seed-t")
    with pytest.raises(DataError, match="at least 2 paired seeds"):
        seed_t_interval(cand[:1], base[:1])


# ------------------------------------------------------------------ the gate on confirmation


def _scores(name: str, correct: np.ndarray, seeds: list[int], protocol_: dict | None = None):
    correct = np.asarray(correct, dtype=bool)
    return contracts.ArmScores(
        arm=name,
        strategy=name.split("/")[0] if name != SCRATCH else None,
        mode="finetune",
        seeds=seeds,
        val_acc=[0.5 + 0.01 * i for i in range(len(seeds))],
        test_acc=[float(r.mean()) for r in correct],
        correct=correct.tolist(),
        pred=[[0] * correct.shape[1]] * len(seeds),
        keys=[f"{name}-{s}" for s in seeds],
        protocol=protocol_ or {},
    )


LABELS = {"k_shot": 10, "classes": 10, "train": 100, "val": 269, "per_model": 369, "distinct": 790}


def _record(phase: str = "confirmation") -> dict:
    return {
        "phase": phase,
        "selection_seeds": [0, 1, 2],
        "arms_compared": 6,
        "transfer_configs": 6,
        "scratch_configs": 6,
        "scratch_config": {"lr": 0.001, "weight_decay": 0.0005},
        "labels": LABELS,
        "confirmation_seeds": [1000, 1001, 1002, 1003, 1004] if phase == "confirmation" else [],
        "source_gain": None,
    }


def test_gate_on_confirmation_seeds_uses_the_two_way_interval_and_reports_the_protocol():
    rng = np.random.default_rng(0)
    seeds = [1000, 1001, 1002, 1003, 1004]
    cand = rng.random((5, 400)) < 0.95
    base = rng.random((5, 400)) < 0.85
    d = promotion.decide(
        _scores("supervised/finetune", cand, seeds, _record()), _scores(SCRATCH, base, seeds)
    )
    expected = two_way_interval(cand, base)
    assert d.passed and d.delta_vs_scratch["ci_low"] == pytest.approx(expected["ci_low"])
    assert d.delta_vs_scratch["method"] == "two-way"
    assert "two-way interval over seeds and test images, 5 confirmation seeds" in d.reason
    for text in ("confirmation seeds 1000–1004", "6 transfer configurations", "best of 6"):
        assert text in d.reason, d.reason
    assert "labels used 369 per model (100 train = k 10 × 10 classes, + 269 validation)" in d.reason
    md = d.to_markdown()
    assert (
        f"two-way interval over seeds and test images (paired; seed variance + test-image variance, t with {expected['df']:g} df)"
        in md
    )
    assert "### Protocol" in md and d.tags()["gate_interval"] == "two-way"
    old = promotion.decide(
        _scores("supervised/finetune", cand, seeds, _record()),
        _scores(SCRATCH, base, seeds),
        interval="seed-t",
    )
    assert old.delta_vs_scratch == seed_t_interval(cand, base) | {"metric": "accuracy"}
    assert "seed-level paired t interval (4 df)" in old.to_markdown()
    tags = d.tags()
    assert tags["gate_arms_compared"] == "6" and tags["gate_labels_used"] == "369"
    assert tags["gate_confirmation_seeds"] == "1000,1001,1002,1003,1004"


def test_without_confirmation_seeds_the_gate_never_promotes():
    rng = np.random.default_rng(1)
    cand, base = rng.random((3, 400)) < 0.99, rng.random((3, 400)) < 0.5
    d = promotion.decide(
        _scores("supervised/finetune", cand, [0, 1, 2], _record("selection")),
        _scores(SCRATCH, base, [0, 1, 2]),
    )
    assert not d.passed and d.rule == "unconfirmed" and "confirm_seeds=0" in d.reason
    assert f"{d.verdict}: {d.reason}".lower().count("not promoted") == 1


# ------------------------------------------------------------------ selection and equal search


def _result(arm: str, seed: int, val: float, **spec) -> contracts.ArmResult:
    stage = "train-scratch-baseline" if arm.startswith(SCRATCH) else "finetune-target"
    return contracts.ArmResult(
        spec=ArmSpec(arm, "finetune", seed, stage, **spec),
        weights_uri=f"s3://b/{arm}/{seed}",
        val_acc=val,
        best_epoch=1,
        stage=contracts.StageRecord(key=f"{arm}-{seed}", checkpoint_uri="s3://b/x"),
    )


def test_scratch_grid_is_chosen_on_validation_only():
    """The plan reads the selection results (validation accuracies; no test numbers exist at
    this point): the scratch point with the best mean validation accuracy wins."""
    vals = {SCRATCH: 0.80, "scratch/lr=0.001,wd=0.0005": 0.86, "scratch/lr=0.01,wd=0.0005": 0.83}
    results = [_result(a, s, v + 0.01 * s, lr=0.001) for a, v in vals.items() for s in range(3)]
    results += [_result("gan/finetune", s, 0.9, strategy="gan") for s in range(3)]
    results += [_result("supervised/finetune", s, 0.91, strategy="supervised") for s in range(3)]
    plan = protocol.plan_confirmation(results)
    assert plan.scratch.arm == "scratch/lr=0.001,wd=0.0005"
    assert plan.candidate.arm == "supervised/finetune"
    assert (plan.arms_compared, plan.scratch_configs, plan.selection_seeds) == (2, 3, [0, 1, 2])
    # confirmation results are never part of the choice
    late = [_result(SCRATCH, 1000 + s, 0.99, phase="confirmation") for s in range(3)]
    assert protocol.plan_confirmation(results + late).scratch.arm == plan.scratch.arm


def test_scratch_searches_as_many_configurations_as_the_transfer_side():
    params = PipelineParams(strategies=["supervised", "gan", "autoencoder"])
    labels = list(params.strategies)
    grid = scratch_grid(params, labels)
    assert len(grid) == 3 * 2 and grid[0] == (3e-3, 5e-4) and len(set(grid)) == 6
    specs = arm_specs(params, labels)
    scratch = [s for s in specs if s.stage == "train-scratch-baseline"]
    assert len(scratch) == 6 * params.seeds and not any(is_candidate(s.arm) for s in scratch)
    assert sum(s.arm == SCRATCH for s in scratch) == params.seeds
    one = PipelineParams(strategies=["supervised"], transfer_modes=["linear_probe"])
    assert scratch_grid(one, ["supervised"]) == [(3e-3, 5e-4)]


def test_scratch_grid_is_refined_when_the_transfer_side_has_more_arms_than_it_has_points():
    """11 candidates × 2 modes: scratch compares 22 configurations too, not the grid's 6. The
    grid comes first, unchanged; the added learning rates are geometric midpoints, inside its
    range, at every weight decay, and no point repeats."""
    params = PipelineParams(transfer_modes=["finetune", "linear_probe"])
    grid = scratch_grid(params, [f"source{i}" for i in range(11)])
    assert len(grid) == 22 and len(set(grid)) == 22
    base = [(lr, wd) for wd in (5e-4, 5e-2) for lr in (3e-3, 1e-3, 1e-2)]
    assert grid[:6] == base
    assert grid[6:10] == [(1.73e-3, 5e-4), (5.48e-3, 5e-4), (1.73e-3, 5e-2), (5.48e-3, 5e-2)]
    assert all(1e-3 <= lr <= 1e-2 and wd in (5e-4, 5e-2) for lr, wd in grid)
    specs = arm_specs(params, [f"source{i}" for i in range(11)])
    scratch = {s.arm for s in specs if s.stage == "train-scratch-baseline"}
    assert len(scratch) == 22 and SCRATCH in scratch
    # a one-point grid widens by half a decade either side first
    one = PipelineParams(scratch_lrs=[1e-3], scratch_weight_decays=[0.0])
    assert scratch_grid(one, ["a", "b"]) == [
        (1e-3, 0.0),
        (3.16e-4, 0.0),
        (3.16e-3, 0.0),
        (5.62e-4, 0.0),
    ]


def test_confirmation_specs_use_fresh_seeds_and_the_chosen_configs():
    params = PipelineParams(confirm_seeds=5)
    cand = ArmSpec("gan/finetune", "finetune", 0, "finetune-target", strategy="gan")
    scratch = ArmSpec(
        "scratch/lr=0.01,wd=0.05",
        "finetune",
        0,
        "train-scratch-baseline",
        lr=0.01,
        weight_decay=0.05,
    )
    specs = confirmation_specs(params, cand, scratch, pool_control=True)
    assert {s.seed for s in specs} == {1000, 1001, 1002, 1003, 1004}
    assert all(s.phase == "confirmation" for s in specs)
    sc = [s for s in specs if s.arm == SCRATCH]
    assert len(sc) == 5 and all((s.lr, s.weight_decay) == (0.01, 0.05) for s in sc)
    pool = [s for s in specs if s.arm == f"{TARGET_POOL_CONTROL}/gan/finetune"]
    assert len(pool) == 5 and not any(is_candidate(s.arm) for s in pool)


def test_source_gain_and_confirmation_rows():
    rng = np.random.default_rng(2)
    seeds = [1000, 1001, 1002]
    arms = {
        "gan/finetune": _scores("gan/finetune", rng.random((3, 300)) < 0.9, seeds),
        SCRATCH: _scores(SCRATCH, rng.random((3, 300)) < 0.8, seeds),
        f"{TARGET_POOL_CONTROL}/gan/finetune": _scores("c", rng.random((3, 300)) < 0.85, seeds),
    }
    evaluation = contracts.Evaluation(
        arms=arms, y_test=[0] * 300, test_index=list(range(300)), classes=["0"]
    )
    spec = ArmSpec("gan/finetune", "finetune", 0, "finetune-target", strategy="gan")
    plan = protocol.Plan(spec, ArmSpec(SCRATCH, "finetune", 0, "x"), 6, 6, [0, 1, 2], {})
    record = protocol.protocol_record(plan, evaluation, LABELS)
    assert record["source_gain"]["mean_diff"] == pytest.approx(
        np.mean(arms["gan/finetune"].correct)
        - np.mean(arms[f"{TARGET_POOL_CONTROL}/gan/finetune"].correct)
    )
    gate = protocol.gate_evaluation(evaluation, plan, record)
    assert set(gate.arms) == {"gan/finetune", SCRATCH}
    assert gate.arms["gan/finetune"].protocol["confirmation_seeds"] == seeds
    rows = {r.arm: r for r in protocol.confirmation_rows(evaluation, {})}
    t = two_way_interval(arms["gan/finetune"].correct, arms[SCRATCH].correct)
    assert rows["gan/finetune (confirm)"].delta_ci == pytest.approx((t["ci_low"], t["ci_high"]))
    assert "scratch (confirm)" in rows


# ------------------------------------------------------------------ k-shot draws and labels


@pytest.fixture(scope="module")
def digits():
    """10 classes × 60 images: 9 test, 9 validation, 5 k-shot and 37 unlabelled per class."""
    labels = np.repeat(np.arange(10), 60)
    rng = np.random.default_rng(3)
    parts = {"train": [], "val": [], "test": [], "unlabelled": []}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        for name, chunk in zip(parts, np.split(idx, [5, 14, 23]), strict=True):
            parts[name].append(chunk)
    arrays = {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
    return labels, Splits(**arrays, dataset_hash="d" * 64, seed=0, k_shot=5)


def test_each_seed_draws_its_own_k_shot_set_from_the_same_pool(digits):
    labels, splits = digits
    np.testing.assert_array_equal(seed_train(splits, labels, 0), splits.train)
    pool = np.union1d(splits.train, splits.unlabelled)
    draws = [seed_train(splits, labels, s) for s in (1, 2, 1000)]
    for draw in draws:
        assert np.isin(draw, pool).all() and not np.isin(draw, np.r_[splits.val, splits.test]).any()
        assert np.bincount(labels[draw], minlength=10).tolist() == [5] * 10
    assert not np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[0], splits.train)
    np.testing.assert_array_equal(seed_train(splits, labels, 1), draws[0])  # deterministic


def test_val_per_class_caps_validation_labels_the_same_for_every_seed(digits):
    labels, splits = digits
    assert capped_val(splits, labels, None) is splits.val
    val = capped_val(splits, labels, 7)
    assert np.bincount(labels[val], minlength=10).tolist() == [7] * 10
    assert np.isin(val, splits.val).all()
    np.testing.assert_array_equal(val, capped_val(splits, labels, 7))
