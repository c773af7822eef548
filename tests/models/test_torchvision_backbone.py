"""`torchvision:<model>` backbones: built by torchvision, weights read through its weights API
(from the torch.hub cache under TORCH_HOME, no network), stage names, input checks, every mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from warmstart import models as M
from warmstart.models.backbones import torchvision as tv


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_cached_file_loads_through_the_weights_api_and_equals_the_file(torch_home):
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    enum = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert tv.hub_cache_file(enum) == cached  # torchvision's exact cache file name
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    trunk = tv.torchvision_state_dict("resnet18")  # DEFAULT = IMAGENET1K_V1
    assert set(trunk) == {f"net.{k}" for k in state if not k.startswith("fc.")}
    assert all(torch.equal(trunk[f"net.{k}"], v) for k, v in state.items() if k in trunk)
    full = tv.torchvision_state_dict("resnet18", with_head=True)  # + its ImageNet classifier
    assert set(full) - set(trunk) == {"head.weight", "head.bias"}
    assert torch.equal(full["head.weight"], state["fc.weight"])
    model = M.get_backbone(
        "torchvision:resnet18", in_channels=1, num_classes=3, image_size=(32, 32)
    )
    M.load_trunk(model, trunk)
    assert torch.equal(model.net.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    with pytest.raises(M.CheckpointError, match="resnet34-b627a593.pth is missing"):
        tv.torchvision_state_dict("resnet34")  # not cached, download not allowed


def test_foreign_keys_and_shapes_are_refused():
    state = torchvision.models.resnet18().state_dict()
    with pytest.raises(M.CheckpointError, match=r"unexpected \['extra.weight'\]"):
        tv.backbone_state("resnet18", {**state, "extra.weight": torch.zeros(1)})
    with pytest.raises(M.CheckpointError, match="missing"):
        tv.backbone_state("resnet34", state)


def test_names_enums_and_sizes_are_checked_with_the_fix():
    with pytest.raises(M.UnknownNameError, match="closest: resnet18"):
        M.get_backbone("torchvision:resnt18", in_channels=3, num_classes=2, image_size=(32, 32))
    with pytest.raises(M.ModelError, match="use one of DEFAULT, IMAGENET1K_V1$"):
        tv.weights_enum("resnet18", "IMAGENET1K_V2")
    with pytest.raises(M.ModelError, match=r"64x64 px do not fit .*vit_b_16.*\?size=224x224"):
        tv.check_input_size("vit_b_16", (64, 64))
    tv.check_input_size("resnet18", (32, 32))


def test_stages_heads_and_preprocessing():
    r18 = tv.torchvision_backbone_class("resnet18")
    assert r18.stage_names == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]
    assert "freeze=layer3" in M.list_transfer_modes("torchvision:resnet18")
    mb = M.get_backbone(
        "torchvision:mobilenet_v3_small", in_channels=1, num_classes=4, image_size=(32, 32)
    )
    assert mb.stage_names[0] == "features.0" and mb.stage_names[-1] == "classifier"
    assert mb.num_features == 1024 and mb.head.out_features == 4
    assert torch.allclose(mb.pixel_mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    mb.eval()
    grey = torch.rand(2, 1, 32, 32)
    assert torch.allclose(mb(grey), mb(grey.expand(-1, 3, -1, -1)))  # grey = RGB repeated
    assert not any(k.startswith("head.") for k in mb.trunk_state_dict())


def test_every_mode_on_mobilenet_v3_small_at_64px():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 3, 64, 64), dtype=np.uint8)
    y = np.arange(12) % 3
    init = {
        f"net.{k}": v
        for k, v in torchvision.models.mobilenet_v3_small().state_dict().items()
        if not k.startswith("classifier.3.")
    }
    cfg = M.TrainConfig(
        epochs=1, seed=0, batch_size=6, probe_views=1, probe_max_iter=20, num_threads=1
    )
    backbone = "torchvision:mobilenet_v3_small"
    for mode in ["finetune", "linear_probe", "lp_ft", "freeze=features.6"]:
        fit = M.fit_target(
            backbone=backbone,
            init_state=init,
            mode=mode,
            in_channels=3,
            image_size=(64, 64),
            num_classes=3,
            train=(x, y),
            val=(x, y),
            config=cfg,
        )
        assert 0.0 <= fit.best_val_acc <= 1.0 and fit.history, mode
        frozen = fit.model.net.features[0][0].weight
        if mode in ("freeze=features.6",):
            assert torch.equal(frozen, init["net.features.0.0.weight"]), mode


@pytest.mark.parametrize(
    ("model", "layer"),
    [("resnet18", "fc"), ("mobilenet_v3_small", "classifier.3"), ("squeezenet1_0", None)],
)
def test_the_weights_own_classifier_is_the_source_head(model, layer):
    """LEEP and NCE read the ImageNet classifier where it is one linear layer on the pooled
    features; squeezenet's is a convolution over the maps: no head."""
    torch.manual_seed(0)
    state = torchvision.models.get_model(model).state_dict()
    head = tv.classifier_state(model, state)
    if layer is None:
        assert head == {}
        return
    assert torch.equal(head["head.weight"], state[f"{layer}.weight"])
    assert torch.equal(head["head.bias"], state[f"{layer}.bias"])
    width = tv.torchvision_backbone_class(model).num_features_
    assert tuple(head["head.weight"].shape) == (1000, width)
    assert (
        tv.classifier_state(model, {k: v for k, v in state.items() if k != f"{layer}.bias"}) == {}
    )
