"""The leakage guard and comparable champions against the real stack (S3, MLflow, Prefect): a
champion from another split is not compared and does not block; the same dataset as source and
target fails the flow before training, in one line, with the counts on its MLflow run, and the
champion trained on those leaky inputs loses its alias; ``allow_leakage`` marks the job."""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest

from warmstart import promotion, stages, tracking
from warmstart.contracts import (
    SCRATCH,
    ArmResult,
    ArmScores,
    ArmSpec,
    Evaluation,
    Job,
    LearnedFrom,
    RunContext,
    StageRecord,
)
from warmstart.data import load_splits, open_dataset
from warmstart.params import PipelineParams
from warmstart.promotion.registry import model_name
from warmstart.stages.leakage import LeakageError, learned_overlaps
from warmstart.tasks.leakage import check_leakage
from warmstart.tracking import END_REASON_TAG
from warmstart.tracking.client import client

SPEC = "builtin:uci-digits?classes=0-1"


def _served(correct: np.ndarray, name: str) -> tuple[Evaluation, ArmResult]:
    """An evaluation whose candidate is right on ``correct`` (scratch: 40% coin flips)."""
    n = len(correct)
    keys = [f"{name}-0", f"{name}-1"]
    arm = ArmScores(
        "supervised/finetune", "supervised", "finetune", [0, 1], [0.9, 0.8],
        [float(correct.mean())] * 2, [correct.tolist()] * 2, [[0] * n] * 2, keys,
    )  # fmt: skip
    scratch = np.random.default_rng(1).random((2, n)) < 0.4
    base = ArmScores(
        SCRATCH, None, "finetune", [0, 1], [0.5, 0.5], [0.4, 0.4], scratch.tolist(),
        [[0] * n] * 2, ["s0", "s1"],
    )  # fmt: skip
    stage = StageRecord(key=keys[0], checkpoint_uri=f"s3://b/{name}")
    spec = ArmSpec("supervised/finetune", "finetune", 0, "finetune-target", "supervised")
    result = ArmResult(spec, f"s3://b/{name}", 0.9, 3, stage, source_key="src")
    return Evaluation({arm.arm: arm, SCRATCH: base}, [0] * n, list(range(n)), ["0", "1"]), result


def _promote(job: Job, model, x: np.ndarray, correct: np.ndarray, name: str):
    ev, served = _served(correct, name)

    def never(version):
        raise AssertionError(f"champion v{version.version} was scored; it is not comparable")

    return promotion.promote(
        ev, served, model, job=job, source=None, example=x[:2], score_version=never
    )


@pytest.mark.services
def test_other_split_champion_is_not_compared_and_a_leaky_one_is_retired(stack):
    import torch

    from warmstart.flows.pipeline import transfer_pipeline

    target = stages.ingest(SPEC)
    source = stages.ingest(SPEC, like=target)
    assert source.hash == target.hash
    params = PipelineParams(
        source=SPEC, target=SPEC, k_shot=5, strategies=["supervised"], seeds=1,
        transfer_modes=["linear_probe"], pretrain_epochs=1, finetune_epochs=1,
    )  # fmt: skip
    plan = stages.make_plan(params)
    split = stages.make_target_splits(target, plan.split, params.k_shot)
    exp = tracking.experiment_id(target.name)
    run = RunContext(exp, tracking.start_run(exp, "itest-leakage"), f"flow-{uuid.uuid4().hex[:6]}")
    job = Job(plan, target, split, run)
    name = model_name(target)
    assert name.startswith("warmstart-uci-digits-0-1-8x8-1ch-")

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2)).eval()
    x = np.zeros((4, 1, 8, 8), dtype=np.float32)
    # registered directly (never loaded): the champion, trained on another split of this target,
    # and the served model's own weights, trained on this split (so promote exports nothing)
    tracking.ensure_registered_model(name)
    data = {"target_dataset_hash": target.hash, "source_dataset_hash": source.hash}
    for split_hash, digest in (("0" * 64, "w1"), (split.hash, tracking.weights_sha256(model))):
        tags = {**data, "split_hash": split_hash, "weights_sha256": digest}
        tracking.create_version(name, f"s3://b/never-loaded-{digest}", run_id=None, tags=tags)
    tracking.set_alias(name, "champion", "1")
    # the champion is not compared, and does not block
    second = _promote(job, model, x, np.arange(200) % 10 < 8, "second")
    d = second.decision
    assert d.passed and d.rule == "promoted" and d.vs_champion is None
    assert "champion v1 not compared (trained on split 000000000000, this run's is" in d.reason
    assert (second.version, second.champion_version, second.previous_champion) == ("2", "2", "1")
    assert not second.registered

    # same dataset as source and target: the flow fails before training, in one line with the
    # counts, and its MLflow parent run ends FAILED with them
    with pytest.raises(LeakageError) as info:
        transfer_pipeline(params)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(
        f"source shares {split.test} of {split.test} test images and {split.val} of {split.val} "
        "validation images with the target"
    )
    (parent,) = client().search_runs([exp], "tags.leakage = 'found'")
    assert parent.info.status == "FAILED" and "source shares" in parent.data.tags[END_REASON_TAG]
    assert parent.data.metrics["leakage.source.test.exact"] == split.test
    assert parent.data.metrics["leakage.source.validation.exact"] == split.val
    assert not [r for r in client().search_runs([exp]) if r.data.tags.get("warmstart.stage")]
    # the champion trained on these leaky inputs lost its alias, with the reason as a tag
    assert "champion" not in tracking.aliases(name)
    v2 = client().get_model_version(name, "2")
    assert v2.tags["leakage"].startswith("source shares") and "champion_removed" in v2.tags

    allow = params.model_copy(update={"allow_leakage": True})
    allowed = dataclasses.replace(job, plan=dataclasses.replace(plan, params=allow))
    marked = check_leakage(allowed, (source,))
    assert marked.leakage.startswith(f"leakage: source shares {split.test} of {split.test} test")
    assert client().get_run(run.run_id).data.metrics["leakage.source.test.exact"] == split.test
    assert client().get_run(run.run_id).data.tags["leakage_allowed"] == "true"
    tracking.end_run(run.run_id)

    # a registered source model: what its weights learned from, against a run's split. Trained
    # on this split (test 20%), it may have seen everything outside this test split, so a run
    # whose test split is 50% of the target finds some of its test images there, by index;
    # a run on the very same split finds none; a model pretrained on this dataset, all.
    wide = stages.make_target_splits(
        target, dataclasses.replace(plan.split, test_fraction=0.5), params.k_shot
    )
    ds, mine, theirs = open_dataset(target.hash), load_splits(wide.hash), load_splits(split.hash)
    images = {"test": ds.images[mine.test], "validation": ds.images[mine.val]}
    wide_job = dataclasses.replace(job, split=wide)
    seen = np.setdiff1d(np.arange(target.count), theirs.test)  # all but its test: k-shot pools
    labels = LearnedFrom("source model's labels", target.hash, split.hash)
    found = {o.split: o for o in learned_overlaps(labels, wide_job, images, mine)}
    assert found["test"].exact == np.isin(mine.test, seen).sum() > 0 and found["test"].leaky
    assert found["validation"].exact == np.isin(mine.val, seen).sum()
    assert learned_overlaps(labels, job, images, mine) == []  # the same split: its test unseen
    pretrained = LearnedFrom("source model's pretraining data", source.hash)
    (test, val) = learned_overlaps(pretrained, wide_job, images, mine)
    assert (test.exact, val.exact) == (wide.test, wide.val)
    gone = LearnedFrom("source model's pretraining data", "f" * 64)  # not in this store
    assert learned_overlaps(gone, wide_job, images, mine) == []


@pytest.mark.services
def test_a_few_copied_images_are_removed_from_every_arms_evaluation_and_counted(stack, tmp_path):
    """A source folder holding 2 of the target's test images and 1 validation image (under the
    1% tolerance): the run is not refused; its split loses exactly those 3 images (stored as
    derived from the original), and the parent run has the counts and the indices."""
    import json

    from PIL import Image

    from warmstart.stages.leakage import learned_labels, same_removal, this_split

    target = stages.ingest("builtin:uci-digits?classes=2-9")
    params = PipelineParams(
        source=f"imagefolder:{tmp_path}?size=8x8&channels=1", target=target.spec, k_shot=5,
        strategies=["supervised"], seeds=1, transfer_modes=["linear_probe"],
    )  # fmt: skip
    plan = stages.make_plan(params)
    split = stages.make_target_splits(target, plan.split, params.k_shot)
    ds, whole = open_dataset(target.hash), load_splits(split.hash)
    copied = {"test": whole.test[[4, 40]], "validation": whole.val[[7]]}
    others = stages.ingest("builtin:uci-digits?classes=0-1")
    for i, img in enumerate(open_dataset(others.hash).images):
        (tmp_path / str(i % 2)).mkdir(exist_ok=True)
        Image.fromarray(img[0]).save(tmp_path / str(i % 2) / f"{i}.png")
    for i in np.concatenate(list(copied.values())):
        Image.fromarray(ds.images[i][0]).save(tmp_path / "0" / f"copy-{i}.png")
    source = stages.ingest(params.source, like=target)
    exp = tracking.experiment_id(target.name)
    run = RunContext(exp, tracking.start_run(exp, "itest-removal"), f"flow-{uuid.uuid4().hex[:6]}")
    job = check_leakage(Job(plan, target, split, run), (source,))
    assert job.leakage is None  # not refused, not blocked
    assert (job.split.removed_test, job.split.removed_val) == (2, 1)
    clean = load_splits(job.split.hash)
    assert clean.derived_from == split.hash and np.array_equal(clean.train, whole.train)
    assert clean.test.tolist() == np.setdiff1d(whole.test, copied["test"]).tolist()
    assert clean.val.tolist() == np.setdiff1d(whole.val, copied["validation"]).tolist()
    assert (job.split.test, job.split.val) == (split.test - 2, split.val - 1)
    parent = client().get_run(run.run_id).data
    assert parent.metrics["leakage.removed.test"] == 2.0
    assert parent.metrics["leakage.removed.validation"] == 1.0
    assert parent.tags["leakage_removed"] == "validation 1, test 2"
    assert parent.tags["split_hash"] == job.split.hash
    record = json.loads(client().download_artifacts(run.run_id, "leakage.json", str(tmp_path)) and
                        (tmp_path / "leakage.json").read_text())  # fmt: skip
    assert record["removed"]["test"] == {"positions": [4, 40], "index": copied["test"].tolist()}
    assert record["split_before"] == split.hash
    tracking.end_run(run.run_id)
    # the label-efficiency flow's split at another k loses the same images
    other = stages.make_target_splits(target, plan.split, 2)
    at_k2 = same_removal(job.split, other)
    assert (at_k2.removed_test, at_k2.removed_val) == (2, 1) and at_k2.train == 2 * 8
    assert load_splits(at_k2.hash).test.tolist() == clean.test.tolist()
    assert same_removal(split, other) == other  # nothing removed: the split as made
    # a source model fine-tuned on this split (or the split cleaned from it) learned its labels
    seen = LearnedFrom("source model's labels", target.hash, job.split.hash)
    assert this_split(seen, dataclasses.replace(job, split=split))
    assert learned_labels(seen, job) == split.train == 5 * 8
