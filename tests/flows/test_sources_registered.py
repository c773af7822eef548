"""Continual transfer from what already exists (real SeaweedFS, MLflow, Prefect): a model that a
tiny pipeline run registered becomes the next run's ``mlflow:`` source, the new version's lineage
points back at it; a stored warmstart checkpoint becomes a ``checkpoint:`` source; a missing
alias, version or model is refused in one line that lists what exists."""

from __future__ import annotations

import pytest
import torch

from tests.flows import configs
from warmstart import stages, storage, tracking
from warmstart.contracts import DatasetRef, Job, RunContext, SplitRef
from warmstart.errors import ConfigError
from warmstart.params import PipelineParams
from warmstart.stages.sources_checkpoint import read_trunk
from warmstart.stages.sources_registered import (
    check_geometry,
    checked_weights,
    lookup,
    registered_weights,
)
from warmstart.stages.weights import load_weights
from warmstart.tracking.client import client

pytestmark = [pytest.mark.services]

TASK_A = "builtin:uci-digits?classes=0-3"  # registers warmstart-uci-digits-0-3-…
TASK_B = "builtin:uci-digits?classes=4-7"  # registers warmstart-uci-digits-4-7-…
ALIAS = "task-a"
FAST = dict(configs.TINY, seeds=1, pretrain_epochs=2, finetune_epochs=2, keep_candidates=True)


@pytest.fixture(scope="module")
def registered(stack) -> dict:
    """Task A trained and registered once (kept as a candidate whatever the gate says), with an
    alias of our own on its version. Pretrained on digits 8-9, labelled on 0-3: nothing it saw
    is in task B's (4-7) validation or test images."""
    from warmstart.flows.pipeline import transfer_pipeline

    summary = transfer_pipeline(
        PipelineParams(**{**FAST, "source": "builtin:uci-digits?classes=8-9", "target": TASK_A})
    )
    mv = registered_by(summary)
    tracking.set_alias(mv.name, ALIAS, mv.version)
    return {"name": mv.name, "version": str(mv.version), "mv": mv}


def registered_by(summary: dict):
    """The version a pipeline run registered, found by its flow run id in the registry."""
    where = f"tags.flow_run_id = '{summary['flow_run_id']}'"
    found = client().search_model_versions(filter_string=where)
    assert len(found) == 1 and str(found[0].version) == str(summary["version"]), summary
    return found[0]


@pytest.mark.slow
def test_a_registered_model_is_the_next_runs_source_with_lineage(registered):
    from warmstart.flows.pipeline import transfer_pipeline

    name, version = registered["name"], registered["version"]
    source = f"mlflow:models:/{name}@{ALIAS}"
    summary = transfer_pipeline(PipelineParams(**{**FAST, "source": source, "target": TASK_B}))
    assert {r["arm"] for r in summary["table"]} >= {"mlflow/linear_probe", "scratch"}
    mv = registered_by(summary)
    assert mv.name.startswith("warmstart-uci-digits-4-7")
    tags = mv.tags
    assert tags["lineage.source_kind"] == "mlflow"
    assert tags["lineage.source_model"] == name
    assert tags["lineage.source_version"] == version
    assert tags["lineage.source_alias"] == ALIAS
    assert tags["lineage.source_model_uri"] == f"models:/{name}/{version}"
    assert tags["lineage.source_run_id"] == registered["mv"].run_id
    assert tags["source_dataset_hash"] == registered["mv"].tags["target_dataset_hash"]
    assert f"models:/{name}/{version}" in mv.description
    assert registered["mv"].run_id in mv.description
    assert f"#/models/{name}/versions/{version}" in mv.description


def test_the_source_weights_are_the_registered_ones(registered):
    name, version = registered["name"], registered["version"]
    pinned = lookup(f"mlflow:models:/{name}@{ALIAS}")
    assert (pinned.version, pinned.geometry.backbone) == (version, "convnet-s")
    assert (pinned.geometry.channels, pinned.geometry.size) == (1, (8, 8))
    uri, digest = registered_weights(pinned)
    assert digest == registered["mv"].tags["weights_sha256"]
    assert set(load_weights(uri)) >= {"head.weight", "head.bias"}  # the head is dropped later
    assert checked_weights(pinned) == (uri, digest, True)  # the ranking's LEEP/NCE read it


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        ("@nope", f"has no alias 'nope'; its aliases: @{ALIAS} (version"),
        ("/99", "has no version 99; its versions: "),
    ],
)
def test_a_missing_alias_or_version_lists_what_exists(registered, suffix, expected):
    spec = f"mlflow:models:/{registered['name']}{suffix}"
    params = PipelineParams(**{**FAST, "source": spec, "target": TASK_B})
    with pytest.raises(ConfigError, match="^--source mlflow") as err:
        stages.make_plan(params)
    assert expected in str(err.value) and registered["version"] in str(err.value)
    assert "\n" not in str(err.value)


def test_an_unknown_model_lists_the_registered_ones(registered):
    params = PipelineParams(**{**FAST, "source": "mlflow:models:/nope/1", "target": TASK_B})
    with pytest.raises(ConfigError, match=f"no registered model 'nope'.*{registered['name']}"):
        stages.make_plan(params)


def test_another_backbone_or_input_is_refused_before_ingest(registered):
    source = f"mlflow:models:/{registered['name']}/{registered['version']}"
    geometry = lookup(source).geometry  # what the provider's validate checks, read once
    other = PipelineParams(**{**FAST, "source": source, "target": TASK_B, "backbone": "resnet18"})
    with pytest.raises(ConfigError, match="is a 'convnet-s' model.*add --backbone convnet-s"):
        check_geometry(source, geometry, other)
    bigger = PipelineParams(**{**FAST, "source": source, "target": TASK_B + "&size=16x16"})
    with pytest.raises(ConfigError, match=r"takes 1×8×8 images.*add &size=8x8&channels=1"):
        check_geometry(source, geometry, bigger)
    check_geometry(source, geometry, PipelineParams(**{**FAST, "source": source, "target": TASK_B}))


def test_a_target_the_registered_model_learned_from_is_refused_before_training(registered):
    """Task A's model saw digits 2-3 labelled: a run on 2-5 would test it on images it trained
    on. The flow stops at the leakage guard, in one line naming the source model's labels."""
    from warmstart.flows.pipeline import transfer_pipeline
    from warmstart.stages.leakage import LeakageError

    source = f"mlflow:models:/{registered['name']}/{registered['version']}"
    overlapping = "builtin:uci-digits?classes=2-5"
    with pytest.raises(LeakageError, match=r"^source model's labels shares \d+ of \d+ test images"):
        transfer_pipeline(PipelineParams(**{**FAST, "source": source, "target": overlapping}))


def test_a_stored_warmstart_checkpoint_is_a_source(registered):
    """The stage prefix a version's ``checkpoint_uri`` tag names, read back from S3."""
    checkpoint = registered["mv"].tags["checkpoint_uri"]
    spec = f"checkpoint:{checkpoint}"
    params = PipelineParams(**{**FAST, "source": spec, "target": TASK_B})
    plan = stages.make_plan(params)  # S3 locations are read when resolved
    geometry, trunk, file = read_trunk(spec)
    assert (geometry.backbone, geometry.channels, geometry.size) == ("convnet-s", 1, (8, 8))
    assert file.startswith(checkpoint + "/ckpt/epoch-")
    pinned = lookup(f"mlflow:models:/{registered['name']}/{registered['version']}")
    served = load_weights(registered_weights(pinned)[0])
    assert set(trunk) == {k for k in served if not k.startswith("head.")}
    assert all(torch.equal(trunk[k], served[k]) for k in trunk)  # the best epoch = served
    target = DatasetRef("h", "s3://x", "t", TASK_B, 4, 1, (8, 8), 100)
    job = Job(plan, target, SplitRef("s", 5, 20, 10, 10, 0), RunContext("0", "r", "f"))
    source = stages.get_source_provider("checkpoint").resolve("checkpoint", None, job)
    stored = load_weights(source.weights_uri)
    assert all(torch.equal(stored[k], trunk[k]) for k in trunk) and set(stored) == set(trunk)
    assert storage.exists(storage.parse_s3_uri(source.weights_uri))
    assert source.provenance["lineage.checkpoint"] == file
    assert source.key == source.provenance["weights_sha256"]
    head = load_weights(source.head_uri)  # the fine-tuning's head over task A's classes
    assert set(head) == {"head.weight", "head.bias"}
    assert torch.equal(head["head.weight"], served["head.weight"])
    tags = registered["mv"].tags  # the stage's learned.json: task A's split and its pretraining
    seen = stages.get_source_provider("checkpoint").learned_from(params)
    assert plan.source.learned_from == tuple(seen)  # what the plan carries to the leakage guard
    assert [(s.dataset_hash, s.split_hash) for s in seen] == [
        (tags["target_dataset_hash"], tags["split_hash"]),
        (tags["source_dataset_hash"], None),
    ]
    assert [s.what for s in seen] == [
        "source checkpoint's labels",
        "source checkpoint's pretraining data",
    ]


def test_a_checkpoint_that_learned_the_target_is_refused_before_training(registered):
    """The same stage as a ``checkpoint:`` source on digits 2-5: its record says it trained on
    task A's 0-3 labels, so the leakage guard stops the run as it does for the registered model."""
    from warmstart.flows.pipeline import transfer_pipeline
    from warmstart.stages.leakage import LeakageError

    spec = f"checkpoint:{registered['mv'].tags['checkpoint_uri']}/ckpt"  # ckpt/ finds it too
    overlapping = "builtin:uci-digits?classes=2-5"
    with pytest.raises(LeakageError, match=r"^source checkpoint's labels shares \d+ of \d+ test"):
        transfer_pipeline(PipelineParams(**{**FAST, "source": spec, "target": overlapping}))
