"""``mlflow:`` and ``checkpoint:`` source specs without services: parsing, and local warmstart
checkpoints read, fitted to the backbone and checked against the target before anything is
ingested — each bad input one line naming the fix."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from warmstart.errors import ConfigError
from warmstart.models import get_backbone
from warmstart.models.checkpoint import save_checkpoint
from warmstart.params import PipelineParams
from warmstart.stages import get_source_provider, provider_for
from warmstart.stages.sources_checkpoint import (
    parse_checkpoint_spec,
    read_plain,
    read_plain_with_head,
    read_trunk,
    read_trunk_with_head,
)
from warmstart.stages.sources_registered import parse_model_spec

TARGET = "builtin:uci-digits?classes=5-9"  # 1×8×8


def write_checkpoint(
    folder: Path, *, backbone="convnet-s", channels=1, size=(8, 8), prefix="model.", meta=None
) -> dict[str, torch.Tensor]:
    """A pretraining-style checkpoint (weights under ``prefix``); returns the model's state."""
    torch.manual_seed(0)
    model = get_backbone(backbone, in_channels=channels, num_classes=5, image_size=size)
    state = model.state_dict()
    ident = {"kind": "pretrain:supervised", "backbone": backbone, "in_channels": channels}
    ident |= {"num_classes": 5, "image_size": list(size)}
    weights = {prefix + k: v for k, v in state.items()}
    save_checkpoint(folder, epoch=1, weights=weights, meta=meta if meta is not None else ident)
    return state


def params(source: str, **extra) -> PipelineParams:
    return PipelineParams(source=source, target=TARGET, **extra)


def test_specs_are_claimed_by_their_providers():
    assert provider_for("mlflow:models:/m@champion").name == "mlflow"
    assert provider_for("checkpoint:/tmp/x").name == "checkpoint"
    assert parse_model_spec("mlflow:models:/warmstart-a@champion") == (
        "warmstart-a",
        "champion",
        None,
    )
    assert parse_model_spec("mlflow:models:/warmstart-a/12") == ("warmstart-a", None, "12")
    pinned = "mlflow:models:/warmstart-a/12?alias=champion"  # what a run reads once validated
    assert parse_model_spec(pinned) == ("warmstart-a", "champion", "12")
    assert parse_checkpoint_spec("checkpoint:s3://b/p?arch=resnet18") == ("s3://b/p", "resnet18")


@pytest.mark.parametrize(
    "spec", ["mlflow:warmstart-a", "mlflow:models:/a", "mlflow:models:/a/v1", "mlflow:models:/a@"]
)
def test_a_malformed_model_uri_names_both_forms(spec):
    with pytest.raises(ConfigError, match=r"mlflow:models:/<name>@<alias> or .*/<version>"):
        get_source_provider("mlflow").validate(params(spec))


def test_a_local_checkpoint_gives_its_trunk_and_passes_validation(tmp_path):
    state = write_checkpoint(tmp_path / "ckpt")
    spec = f"checkpoint:{tmp_path}"  # a stage folder: the checkpoint is in ckpt/
    geometry, trunk, file = read_trunk(spec)
    assert (geometry.backbone, geometry.channels, geometry.size) == ("convnet-s", 1, (8, 8))
    assert file == f"{tmp_path}/ckpt/epoch-001.safetensors"
    assert set(trunk) == {k for k in state if not k.startswith("head.")}
    assert all(torch.equal(trunk[k], state[k]) for k in trunk)
    get_source_provider("checkpoint").validate(params(spec))


def test_a_checkpoint_hands_over_the_head_beside_its_trunk(tmp_path):
    """A supervised pretraining's head (``model.head.``) is the source's classifier (LEEP and
    NCE); an autoencoder's encoder (``encoder.``, built without a head) has none."""
    state = write_checkpoint(tmp_path / "sup")
    _, trunk, head, _ = read_trunk_with_head(f"checkpoint:{tmp_path / 'sup'}")
    assert set(head) == {"head.weight", "head.bias"} and not any(k in trunk for k in head)
    assert torch.equal(head["head.weight"], state["head.weight"])
    encoder = {k: v for k, v in state.items() if not k.startswith("head.")}
    save_checkpoint(tmp_path / "ae", epoch=1, weights={f"encoder.{k}": v for k, v in encoder.items()},
                    meta={"backbone": "convnet-s", "in_channels": 1, "image_size": [8, 8]})  # fmt: skip
    _, trunk, head, _ = read_trunk_with_head(f"checkpoint:{tmp_path / 'ae'}")
    assert head == {} and set(trunk) == set(encoder)


@pytest.mark.parametrize(
    ("make", "source", "expected"),
    [
        (None, "checkpoint:{tmp}/missing", r"missing does not exist: check the path"),
        ("empty", "checkpoint:{tmp}", r"no warmstart checkpoint at .*no meta\.json"),
        ("foreign", "checkpoint:{tmp}", r"does not fit backbone 'convnet-s' at 1×8×8"),
        ("rgb16", "checkpoint:{tmp}", r"takes 3×16×16 images.*add &size=16x16&channels=3"),
        ("resnet", "checkpoint:{tmp}", r"is a 'resnet18' model.*add --backbone resnet18"),
        ("plain", "checkpoint:{tmp}/w.safetensors", r"no meta\.json beside it.*\?arch="),
        ("badmeta", "checkpoint:{tmp}", r"meta\.json does not name backbone"),
        (None, "checkpoint:{tmp}?arch=resnet18&x=1", r"unknown option x"),
    ],
)
def test_a_bad_checkpoint_is_refused_in_one_line(tmp_path, make, source, expected):
    if make == "foreign":  # a 3-channel trunk under a meta that says 1 channel
        meta = {"backbone": "convnet-s", "in_channels": 1, "image_size": [8, 8]}
        write_checkpoint(tmp_path, channels=3, meta=meta)
    elif make == "rgb16":
        write_checkpoint(tmp_path, channels=3, size=(16, 16))
    elif make == "resnet":
        write_checkpoint(tmp_path, backbone="resnet18")
    elif make == "plain":
        save_file({"w": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    elif make == "badmeta":
        write_checkpoint(tmp_path, meta={"backbone": "convnet-s"})
    elif make == "empty":
        (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match=expected) as err:
        get_source_provider("checkpoint").validate(params(source.format(tmp=tmp_path)))
    assert "\n" not in str(err.value) and str(err.value).startswith("--source checkpoint:")


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random-init mobilenet_v3_small state dict saved as plain safetensors."""
    from torchvision.models import mobilenet_v3_small

    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in mobilenet_v3_small(weights=None).state_dict().items()}
    path = tmp_path_factory.mktemp("tv") / "mnv3.safetensors"
    save_file(state, str(path))
    return path, state


def test_a_plain_torchvision_state_dict_with_arch_is_a_source(torchvision_file):
    path, state = torchvision_file
    spec = f"checkpoint:{path}?arch=mobilenet_v3_small"
    ok = params(spec, backbone="torchvision:mobilenet_v3_small")
    get_source_provider("checkpoint").validate(ok)
    backbone, trunk, file = read_plain(spec)
    assert (backbone, file) == ("torchvision:mobilenet_v3_small", str(path))
    assert set(trunk) == {f"net.{k}" for k in state if not k.startswith("classifier.3.")}
    assert torch.equal(trunk["net.features.0.0.weight"], state["features.0.0.weight"])
    head = read_plain_with_head(spec)[2]  # its own ImageNet classifier: the source's head
    assert torch.equal(head["head.weight"], state["classifier.3.weight"])
    with pytest.raises(ConfigError, match="add --backbone torchvision:mobilenet_v3_small"):
        get_source_provider("checkpoint").validate(params(spec))


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("resnet18", r"weights do not fit torchvision:resnet18 \(missing"),
        ("mobilenet_v3_smal", r"unknown torchvision model 'mobilenet_v3_smal' \(closest: "),
    ],
)
def test_a_state_dict_that_does_not_fit_its_arch_is_refused(torchvision_file, arch, expected):
    spec = f"checkpoint:{torchvision_file[0]}?arch={arch}"
    with pytest.raises(ConfigError, match=f"^--source checkpoint:.*{expected}"):
        read_plain(spec)


def test_a_registered_source_names_what_its_weights_learned_from(monkeypatch):
    """The leakage guard checks a version's pretraining data and its labelled split (its tags);
    a version without them names nothing, and a dataset source leaves it to the dataset check."""
    from warmstart.stages import sources_registered

    tags = {
        "source_dataset_hash": "a" * 64,
        "target_dataset_hash": "b" * 64,
        "split_hash": "c" * 64,
    }
    version = SimpleNamespace(tags=tags)
    monkeypatch.setattr(sources_registered, "lookup", lambda spec: version)
    provider = provider_for("mlflow:models:/warmstart-x@champion")
    seen = provider.learned_from(params("mlflow:models:/warmstart-x@champion"))
    assert [(s.what, s.dataset_hash, s.split_hash) for s in seen] == [
        ("source model's pretraining data", "a" * 64, None),
        ("source model's labels", "b" * 64, "c" * 64),
    ]
    version.tags = {}
    assert provider.learned_from(params("mlflow:models:/warmstart-x@champion")) == []
    assert provider_for("builtin:mnist-5k").learned_from(params("builtin:mnist-5k")) == []


def test_validation_pins_an_alias_to_the_version_it_names_now(monkeypatch):
    """Every stage after validation reads the pinned spec: an alias that moves mid-run (another
    run promoted) cannot make the leakage guard check one version and training load another."""
    from warmstart import stages
    from warmstart.stages import sources_registered
    from warmstart.stages.sources_registered import Geometry, RegisteredVersion

    def lookup(spec):
        name, alias, version = parse_model_spec(spec)
        return RegisteredVersion(
            spec, name, version or "7", alias, "r", "0", Geometry("convnet-s", 1, (8, 8)), {}
        )

    monkeypatch.setattr(sources_registered, "lookup", lookup)
    monkeypatch.setattr(sources_registered.tracking, "check_server", lambda timeout: None)
    plan = stages.make_plan(params("mlflow:models:/warmstart-x@champion"))
    pinned = plan.params
    assert pinned.source == plan.source.spec == "mlflow:models:/warmstart-x/7?alias=champion"
    assert (plan.source.provider, plan.source.needs_dataset) == ("mlflow", False)
    assert pinned.model_copy(update={"source": TARGET}) == params(TARGET)  # nothing else changed
    again = stages.make_plan(pinned)  # a pinned spec plans to itself: still version 7
    assert again.source.spec == pinned.source
    plain = stages.make_plan(params("mlflow:models:/warmstart-x/3"))
    assert plain.source.spec == "mlflow:models:/warmstart-x/3"
    dataset = stages.make_plan(params("builtin:mnist-5k"))
    assert (dataset.source.spec, dataset.source.provider) == ("builtin:mnist-5k", "pretrain")


def test_a_stage_folder_says_what_its_weights_learned_from(tmp_path):
    """``learned.json`` beside ``ckpt/`` is found from the stage folder, ``ckpt/`` or an epoch
    file; a checkpoint without it (a plain state dict, an older stage) names nothing."""
    from warmstart.contracts import LearnedFrom
    from warmstart.stages.sources import read_learned, write_learned
    from warmstart.stages.sources_checkpoint import learned_from_stage, stage_folders

    seen = [LearnedFrom("source checkpoint's labels", "a" * 64, "b" * 64)]
    path = write_learned(tmp_path, seen + seen)  # duplicates are written once
    assert read_learned(path.read_bytes()) == seen
    write_checkpoint(tmp_path / "ckpt")
    for location in (tmp_path, tmp_path / "ckpt", tmp_path / "ckpt" / "epoch-001.safetensors"):
        assert learned_from_stage(str(location)) == seen, location
        provider = provider_for(f"checkpoint:{location}")
        assert provider.learned_from(params(f"checkpoint:{location}")) == seen
    assert stage_folders("s3://b/checkpoints/k/ckpt/") == [
        "s3://b/checkpoints/k/ckpt",
        "s3://b/checkpoints/k",
    ]
    path.unlink()
    assert learned_from_stage(str(tmp_path / "ckpt")) == []
    assert read_learned(b"not json") == [] and read_learned(b'[{"what": 1}]') == []


@pytest.mark.parametrize(
    "weights_uri",
    [
        "s3://warmstart/checkpoints/other-stage/weights.safetensors",
        "s3://warmstart/checkpoints/finetune-1/../other/weights.safetensors",
        None,
    ],
)
def test_a_registered_version_whose_result_points_outside_its_stage_is_refused(
    monkeypatch, weights_uri
):
    """Issue 22: result.json is bucket content; its weights_uri must lie in the stage's prefix."""
    import json

    from warmstart.stages import sources_registered

    version = SimpleNamespace(
        spec="mlflow:models:/warmstart-x/1",
        uri="models:/warmstart-x/1",
        tags={
            "checkpoint_uri": "s3://warmstart/checkpoints/finetune-1",
            "weights_sha256": "a" * 64,
        },
    )
    monkeypatch.setattr(sources_registered.storage, "exists", lambda target: True)
    body = json.dumps({"weights_uri": weights_uri}).encode()
    monkeypatch.setattr(sources_registered.storage, "get_bytes", lambda target: body)
    monkeypatch.setattr(sources_registered, "load_weights", lambda uri: pytest.fail(uri))
    with pytest.raises(ConfigError, match="names weights_uri .* outside its stage"):
        sources_registered.registered_weights(version)
