"""What the verdict says about the leakage guard's work (no services): the validation and test
images every arm was evaluated without (0 is said too), and the labels a source model already
learned from this target's split, counted in "labels used" beside the asymmetry with scratch."""

from __future__ import annotations

import numpy as np

from warmstart import promotion, stages
from warmstart.contracts import SCRATCH, ArmScores, DatasetRef, Job, RunContext, SplitRef
from warmstart.data import ImageDataset
from warmstart.data.splits import Splits
from warmstart.params import PipelineParams
from warmstart.reports.table import removed_note
from warmstart.reports.verdict import labels_text, protocol_sentence
from warmstart.stages import training
from warmstart.tasks.confirm import guard_record

LABELS = {"k_shot": 5, "classes": 10, "train": 50, "val": 200, "per_model": 250, "distinct": 400}
# a confirmation-phase protocol record over two arms (the keys the verdict reads)
RECORD = dict(
    phase="confirmation",
    selection_seeds=[0, 1],
    arms_compared=2,
    transfer_configs=2,
    scratch_configs=2,
    scratch_config={"lr": 0.001, "weight_decay": 0.0005},
    labels=LABELS,
    confirmation_seeds=[1000, 1001, 1002],
    source_gain=None,
)


def _job(removed_val: int = 0, removed_test: int = 0, source_labels: int = 0) -> Job:
    target = DatasetRef("d" * 64, "s3://b/d", "digits", "builtin:uci-digits", 10, 1, (8, 8), 600)
    split = SplitRef("s" * 64, 5, 50, 90 - removed_val, 90 - removed_test, 460, removed_val,
                     removed_test)  # fmt: skip
    run = RunContext("1", "run", "flow")
    plan = stages.make_plan(PipelineParams(k_shot=5))
    return Job(plan, target, split, run, source_labels=source_labels)


def test_zero_removed_images_are_reported_as_a_number():
    record = guard_record(RECORD, _job())
    assert record["overlap_removed"]["validation"] == record["overlap_removed"]["test"] == 0
    sentence = protocol_sentence(record)
    assert "evaluated without 0 validation and 0 test images the leakage guard flagged" in sentence
    assert "Every arm evaluated without 0 validation and 0 test images" in removed_note(
        _job().split
    )


def test_removed_images_reach_the_verdict_the_report_and_the_table():
    job = _job(removed_val=1, removed_test=3)
    record = guard_record(RECORD, job)
    rng = np.random.default_rng(0)
    seeds = [1000, 1001, 1002]

    def scores(name: str, p: float, protocol: dict | None = None) -> ArmScores:
        correct = rng.random((3, 87)) < p
        return ArmScores(
            arm=name, strategy=None, mode="finetune", seeds=seeds, val_acc=[0.9] * 3,
            test_acc=correct.mean(1).tolist(), correct=correct.tolist(),
            pred=np.zeros((3, 87), int).tolist(), keys=["k"] * 3, seconds=[1.0] * 3,
            protocol=protocol or {},
        )  # fmt: skip

    d = promotion.decide(scores("supervised/finetune", 0.9, record), scores(SCRATCH, 0.8))
    line = "evaluated without 1 validation and 3 test images the leakage guard flagged"
    assert line in d.reason and line in d.to_markdown()
    assert "without 1 validation and 3 test images" in removed_note(job.split)


def test_labels_a_source_model_learned_count_and_the_asymmetry_is_stated(monkeypatch):
    labels = np.repeat(np.arange(10), 60)
    split = Splits(
        train=np.arange(0, 600, 12), val=np.arange(1, 600, 3), test=np.arange(2, 600, 3),
        unlabelled=np.setdiff1d(np.arange(0, 600, 3), np.arange(0, 600, 12)),
        dataset_hash="d" * 64, seed=0, k_shot=5,
    )  # fmt: skip
    ds = ImageDataset(np.zeros((600, 1, 8, 8), np.uint8), labels, [str(c) for c in range(10)])
    monkeypatch.setattr(training, "load_target", lambda job: (ds, split))
    plain = training.labels_used(_job(), [0])
    learned = training.labels_used(_job(source_labels=50), [0])
    assert plain["source"] == 0 and learned["source"] == 50
    assert learned["per_model"] == plain["per_model"] + 50 == 50 + 200 + 50
    assert learned["distinct"] == plain["distinct"] + 50
    text = labels_text(learned)
    assert text.startswith("labels used 300 per model (50 train = k 5 × 10 classes, + 200 ")
    assert "+ 50 the source model was already fine-tuned on" in text
    assert "the transfer arm had them, scratch did not" in text
    assert "already fine-tuned" not in labels_text(plain)
