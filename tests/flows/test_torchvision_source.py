"""Published weights offline (real SeaweedFS, MLflow, Prefect; no network): the weights mirror
checks what it takes (weights_only load, keys, the enum's hash) and a user's file comes back
through the torch.hub loader equal to the file; one tiny pipeline run at 64x64 px on each of
``torchvision:resnet18`` and ``torchvision:mobilenet_v3_small`` (weights from the mirror) through
every transfer mode (mobilenet's opt-in), with the gate's verdict on two confirmation seeds and
the lineage tags on the registered version."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision

from tests.flows import configs
from tests.verdicts import expected_verdict
from warmstart import weights
from warmstart.errors import ConfigError
from warmstart.params import PipelineParams
from warmstart.tracking.client import client

pytestmark = [pytest.mark.services]


@pytest.fixture(scope="module")
def random_r18(stack, tmp_path_factory) -> dict:
    """A randomly initialised resnet18 saved as a weights file (what a user would add)."""
    torch.manual_seed(1)
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path_factory.mktemp("w") / "resnet18-f37072fd.pth"  # torchvision's file name
    torch.save(state, path)
    return {"path": path, "state": state}


def test_mirror_refuses_bad_files_before_uploading(random_r18, tmp_path):
    path = random_r18["path"]
    before = {e.name for e in weights.entries()}
    with pytest.raises(ConfigError, match="refused, its sha256 .* does not match"):
        weights.add(path)  # its name says resnet18.IMAGENET1K_V1: the hash must match
    with pytest.raises(ConfigError, match="refused"):
        weights.add(path, "resnet18.IMAGENET1K_V1")
    foreign = tmp_path / "foreign.pth"
    torch.save({**random_r18["state"], "extra.weight": torch.zeros(2)}, foreign)
    with pytest.raises(ConfigError, match=r"unexpected \['extra.weight'\]"):
        weights.add(foreign, "mine", "resnet18")
    pickled = tmp_path / "pickled.pth"
    pickled.write_bytes(pickle.dumps({"fc.weight": ConfigError("not a tensor")}))
    with pytest.raises(ConfigError, match="not a weights-only state dict"):
        weights.add(pickled, "mine", "resnet18")
    with pytest.raises(ConfigError, match="add --arch"):
        weights.add(foreign, "mine")
    assert {e.name for e in weights.entries()} == before  # nothing was uploaded


def test_user_file_round_trips_through_the_mirror(random_r18):
    entry = weights.add(random_r18["path"], "my-resnet18", "resnet18")
    assert entry.uri.endswith(f"/weights/user/my-resnet18/{entry.sha256}.pth")
    assert entry.name in {e.name for e in weights.entries()}
    weights.clear_local(entry)
    fetched = weights.fetch("resnet18", "my-resnet18")
    assert (fetched.origin, fetched.sha256, fetched.weights) == ("mirror", entry.sha256, entry.name)
    state = random_r18["state"]
    assert all(
        torch.equal(fetched.state[f"net.{k}"], v) for k, v in state.items() if "fc." not in k
    )
    assert not any(k.startswith("head.") for k in fetched.state)  # the trunk alone
    # its own classifier apart, as the Backbone's head keys: the ranking's LEEP and NCE read it
    assert torch.equal(fetched.head["head.weight"], state["fc.weight"])
    assert torch.equal(fetched.head["head.bias"], state["fc.bias"])


# Each model through every transfer mode, freeze=<stage> with torchvision's stage name: one
# tiny pipeline run per model (about a minute each on 2 CPU cores, whatever the model).
RUNS = {
    "resnet18": ["finetune", "linear_probe", "lp_ft", "freeze=layer3"],
    "mobilenet_v3_small": ["finetune", "linear_probe", "lp_ft", "freeze=features.6"],
}
RULES = {"below-margin", "worse-than-champion", "champion-incomparable"}  # what 2 seeds can say


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "mobilenet_v3_small"])
def test_every_mode_end_to_end_at_64px_with_verdict_and_lineage(
    model, stack, monkeypatch, tmp_path
):
    """A randomly initialised torchvision model added as the user's weights, then one pipeline
    at 64x64 px: every mode trains, the gate gives its verdict, and the (kept) candidate version
    carries the lineage tags."""
    from warmstart.flows.pipeline import transfer_pipeline

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # nothing cached
    torch.manual_seed(1)
    path = tmp_path / f"{model}-random.pth"
    torch.save(torchvision.models.get_model(model).state_dict(), path)
    entry = weights.add(path, f"my-{model}", model)
    modes = RUNS[model]
    params = PipelineParams(
        **{
            **configs.TINY,
            "source": f"torchvision:{model}?weights=my-{model}",
            "target": "builtin:shapes?n=24&num_classes=3&size=64x64",
            "transfer_modes": modes,
            "seeds": 1,
            "k_shot": 1,
            "finetune_epochs": 1,
            "confirm_seeds": 2,  # the fewest the gate's interval takes
            "scratch_lrs": [3e-3],  # one scratch configuration (the grid is not under test)
            "scratch_weight_decays": [5e-4],
            "keep_candidates": True,
        }
    )
    assert params.backbone == f"torchvision:{model}"
    summary = transfer_pipeline(params)
    arms = {r["arm"] for r in summary["table"]}
    assert {f"torchvision/{m}" for m in modes} | {"scratch"} <= arms
    assert summary["protocol"]["confirmation_seeds"] == [1000, 1001]
    assert summary["passed"] == (summary["verdict"] == "promoted")
    assert (
        summary["model_name"].startswith("warmstart-shapes-")
        and "-64x64-3ch-" in summary["model_name"]
    )
    found = client().search_model_versions(
        filter_string=f"tags.flow_run_id = '{summary['flow_run_id']}'"
    )
    assert len(found) == 1
    tags = found[0].tags
    assert tags["lineage.source_kind"] == "torchvision"
    assert (tags["lineage.source_model"], tags["lineage.weights"]) == (model, f"my-{model}")
    assert tags["lineage.weights_sha256"] == entry.sha256
    assert tags["lineage.weights_origin"] == "mirror"
    assert tags["gate_verdict"] == summary["verdict"]
    # random-init weights are no real gain over scratch: the gate refuses, and its verdict is
    # what its rules give on the numbers it reported
    assert summary["verdict"] == expected_verdict(tags) == "not promoted", summary["reason"]
    assert summary["rule"] in RULES
