"""The stage contracts: frozen, one name per concept, and a lossless JSON round trip (the form a
finished stage's record takes in S3)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from warmstart.contracts import (
    ArmResult,
    ArmScores,
    ArmSpec,
    DatasetRef,
    Evaluation,
    SourceModel,
    SplitRef,
    StageRecord,
    is_candidate,
)
from warmstart.params import PipelineParams
from warmstart.stages import arm_specs

STAGE = StageRecord(
    key="finetune-abc",
    checkpoint_uri="s3://b/checkpoints/finetune-abc",
    history=({"epoch": 1, "val_acc": 0.5},),
    seconds=1.5,
    config={"lr": 0.1},
)


def _roundtrip(obj):
    return type(obj).from_dict(json.loads(json.dumps(obj.to_dict())))


@pytest.mark.parametrize(
    "obj",
    [
        DatasetRef(
            "h", "s3://b/datasets/h", "uci", "builtin:uci-digits", 10, 1, (8, 8), 1797, ("0", "1")
        ),
        SplitRef("s", 5, 50, 20, 30, 100),
        STAGE,
        SourceModel(
            label="gan",
            provider="pretrain",
            backbone="convnet-s",
            weights_uri="s3://b/w",
            channels=1,
            image_size=(8, 8),
            provenance={"source_dataset_hash": "h"},
            stage=STAGE,
        ),
        ArmResult(
            ArmSpec("gan/finetune", "finetune", 1, "finetune-target", "gan"),
            "s3://b/m",
            0.9,
            3,
            STAGE,
        ),
        Evaluation(
            arms={
                "scratch": ArmScores(
                    "scratch", None, "finetune", [0], [0.5], [0.4], [[True, False]], [[1, 0]]
                )
            },
            y_test=[1, 1],
            test_index=[4, 7],
            classes=["a", "b"],
        ),
    ],
    ids=lambda o: type(o).__name__,
)
def test_json_roundtrip_is_lossless(obj):
    assert _roundtrip(obj) == obj


def test_contracts_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        STAGE.key = "other"  # type: ignore[misc]


def test_one_definition_of_a_candidate():
    assert is_candidate("gan/lp_ft")
    assert not is_candidate("scratch")
    assert not is_candidate("control/random-init-frozen")
    assert not is_candidate("control/pixel-logreg")


def test_arm_specs_cover_sources_modes_seeds_scratch_and_control():
    params = PipelineParams(
        strategies=["supervised", "gan"], transfer_modes=["finetune", "lp_ft"], seeds=2
    )
    specs = arm_specs(params, ["supervised", "gan"])
    transfer = [s for s in specs if s.is_candidate]
    assert len(transfer) == 2 * 2 * 2
    assert {s.arm for s in transfer} == {
        "supervised/finetune",
        "supervised/lp_ft",
        "gan/finetune",
        "gan/lp_ft",
    }
    # scratch searches as many (lr, weight decay) points as there are transfer arms (4)
    grid = ["scratch", "scratch/lr=0.001,wd=0.0005", "scratch/lr=0.01,wd=0.0005"]
    grid.append("scratch/lr=0.003,wd=0.05")
    scratch = [(a, seed, "train-scratch-baseline") for a in grid for seed in (0, 1)]
    assert [(s.arm, s.seed, s.stage) for s in specs if not s.is_candidate] == [
        *scratch,
        ("control/random-init-frozen", 0, "train-control"),
        ("control/random-init-frozen", 1, "train-control"),
    ]
    assert all(s.mode == "finetune" for s in specs if s.arm.startswith("scratch"))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"strategies": ["diffusion"]}, ["unknown strategy 'diffusion'", "supervised"]),
        ({"transfer_modes": ["freeze=layer9"]}, ["freeze=layer9", "freeze=stage1"]),
        ({"backbone": "vgg"}, ["unknown backbone 'vgg'", "convnet-s"]),
    ],
)
def test_params_check_names_against_the_registries(kwargs, words):
    with pytest.raises(ValueError) as info:
        PipelineParams(**kwargs)
    assert all(w in str(info.value) for w in words)
