"""The model card: generated from an evaluation, a decision, a job and tags (no services)."""

from __future__ import annotations

import numpy as np
import pytest

from warmstart import stages
from warmstart.contracts import (
    ArmScores,
    DatasetRef,
    Evaluation,
    Job,
    RunContext,
    SplitRef,
    StageRecord,
)
from warmstart.params import PipelineParams
from warmstart.reports import model_card


def _evaluation() -> Evaluation:
    y = [0] * 6 + [1] * 6 + [2] * 2  # class 2 is rare
    served = [0] * 6 + [1] * 5 + [0] + [2, 0]  # class 1: 5/6, class 2: 1/2
    scratch_a = [0] * 6 + [1] * 6 + [2, 2]
    scratch_b = [0] * 6 + [1] * 3 + [0] * 3 + [2, 2]
    arm = ArmScores(
        "supervised/finetune",
        "supervised",
        "finetune",
        [0],
        [0.9],
        [0.0],
        [[p == t for p, t in zip(served, y, strict=True)]],
        [served],
    )
    scratch = ArmScores(
        "scratch",
        None,
        "finetune",
        [0, 1],
        [0.5, 0.5],
        [0.0, 0.0],
        [[True] * 14, [True] * 14],
        [scratch_a, scratch_b],
    )
    return Evaluation({arm.arm: arm, "scratch": scratch}, y, list(range(14)), ["5", "6", "7"])


def _job() -> Job:
    ref = DatasetRef(
        "ab" * 32,
        "s3://b/d",
        "uci-digits-5-7",
        "builtin:uci-digits?classes=5-7",
        3,
        1,
        (8, 8),
        540,
        ("5", "6", "7"),
    )
    split = SplitRef("cd" * 32, 5, 15, 30, 14, 400)
    plan = stages.make_plan(PipelineParams(k_shot=5))
    return Job(plan, ref, split, RunContext("1", "run-parent", "flow-1"))


def test_per_class_accuracy_and_confusion():
    acc = model_card.per_class_accuracy([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], 3)
    assert acc[0] == 0.5 and acc[1] == pytest.approx(2 / 3) and np.isnan(acc[2])
    assert model_card.confusion([0, 0, 1], [0, 1, 1], 2) == [[1, 1], [0, 1]]


def test_card_says_what_the_run_knows():
    facts = model_card.card_facts(
        name="warmstart-uci-digits-5-7-8x8-1ch-abcdef",
        version="3",
        job=_job(),
        evaluation=_evaluation(),
        candidate="supervised/finetune",
        served_index=0,
        verdict_markdown="## Gate: **promoted** — `supervised/finetune`\n\nΔ +6.6 [+3.9, +9.2]",
        tags={
            "arm": "supervised/finetune",
            "strategy": "supervised",
            "seed": "0",
            "training_run_id": "run-train",
            "lineage.note": "from mnist",
        },
        leakage={"report": "no overlap", "counts": {"leakage.source.test.exact": 0.0}},
        records=[
            StageRecord("k1", "s3://c/1", seconds=12.0),
            StageRecord("k2", "s3://c/2", seconds=30.0, reused=True),
        ],
        wall_seconds=61.23,
        pretrain_images=2000,
    )
    assert [r["accuracy"] for r in facts.per_class] == [1.0, 5 / 6, 0.5]
    assert [r["scratch_accuracy"] for r in facts.per_class] == [1.0, 0.75, 1.0]
    assert [r["test_images"] for r in facts.per_class] == [6, 6, 2]
    assert facts.balanced["served"] == pytest.approx((1 + 5 / 6 + 0.5) / 3)
    assert facts.confusion == [[6, 0, 0], [1, 5, 0], [1, 0, 1]]
    assert facts.compute == {
        "wall_seconds": 61.2,
        "stages_trained": 1,
        "stages_reused": 1,
        "training_seconds": 12.0,
        "pretrain_images": 2000,
    }
    card = model_card.render_card(facts)
    assert card.startswith("# Model card: `warmstart-uci-digits-5-7-8x8-1ch-abcdef` version 3\n")
    for text in (
        "3 classes (`5`, `6`, `7`), input 1x8x8",
        "- **lineage.note**: `from mnist`",
        "- **training_run_id**: `run-train`",
        f"- **target_dataset_hash**: {'ab' * 32}",
        "5 per class x 3 classes = 15 labelled training images",
        "### Gate: **promoted**",
        "Δ +6.6 [+3.9, +9.2]",
        "**Classes more than 10 points below scratch:** `7` (50.0% vs scratch 100.0%).",
        "- no overlap",
        "- `leakage.source.test.exact`: 0",
        "| `6` | 6 | 83.3% | 75.0% |",
        "| `7` | 2 | 50.0% | 100.0% |",
        "Balanced accuracy: 77.8% (scratch 91.7%).",
        "| 7 | 1 | 0 | 1 |",
        "- **wall_seconds**: 61.2",
        "1-channel 8x8 images",
        "images like `builtin:uci-digits?classes=5-7`",
    ):
        assert text in card, text


def test_class_metrics_are_means_over_seeds_for_every_arm():
    m = model_card.class_metrics(_evaluation())
    assert m["test_class_acc.scratch.6"] == 0.75  # seeds: 6/6 and 3/6
    assert m["test_class_acc.supervised.finetune.7"] == 0.5
    assert m["test_balanced_acc.scratch"] == pytest.approx((1 + 0.75 + 1) / 3)
    assert m["test_balanced_acc.supervised.finetune"] == pytest.approx((1 + 5 / 6 + 0.5) / 3)
    assert len(m) == 2 * (1 + 3)


def test_no_weaker_class_is_said_too():
    rows = [{"class": "a", "accuracy": 0.9, "scratch_accuracy": 0.95}]
    assert model_card.weaker_classes(rows) == []
    assert model_card.weaker_classes(rows, drop=0.01) == ["`a` (90.0% vs scratch 95.0%)"]
