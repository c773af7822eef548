"""A `torchvision:` source without `?size=` on the target: the target takes the input size of the
weights' own transforms, with a one-line notice that says how to train faster (no services)."""

from __future__ import annotations

import logging

import pytest

from warmstart.models.backbones import torchvision as tv
from warmstart.params import PipelineParams, SweepParams
from warmstart.stages.sources_torchvision import TorchvisionProvider

LOGGER = "warmstart.stages.sources_torchvision"


def notices(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def planned(params: PipelineParams) -> PipelineParams:
    """The params with the target the plan ingests (``make_plan`` applies the provider's
    ``target_spec``; its other checks read the weights, which these tests do not need)."""
    return params.model_copy(update={"target": TorchvisionProvider().target_spec(params)})


def test_target_without_size_takes_the_weights_crop_with_one_notice(caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    p = planned(PipelineParams(source="torchvision:resnet18", target="builtin:shapes?n=30"))
    assert p.target == "builtin:shapes?n=30&size=224x224&crop=center:0.875"  # 224 of 256
    (line,) = notices(caplog)
    assert "get the input of ResNet18_Weights.IMAGENET1K_V1" in line
    assert "shorter side 256 px, centre crop 224x224 px" in line
    assert "add ?size=64x64 to --target (32 px and up fit resnet18)" in line
    assert "\n" not in line
    again = planned(PipelineParams(**p.model_dump()))  # planned again: no second notice
    assert again.target == p.target and len(notices(caplog)) == 1


def test_an_explicit_size_wins_and_says_nothing(caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    p = planned(PipelineParams(source="torchvision:resnet18", target="imagefolder:/x?size=64x48"))
    assert p.target == "imagefolder:/x?size=64x48"
    assert notices(caplog) == []
    assert PipelineParams(target="builtin:shapes").target == "builtin:shapes"  # not torchvision


@pytest.mark.parametrize(
    ("source", "target", "size", "weights", "advice"),
    [
        # A user's own weights (not an enum) share the DEFAULT enum's transforms.
        (
            "torchvision:resnet18?weights=my-r18",
            "imagefolder:/p",
            224,
            "of resnet18's DEFAULT weights ResNet18_Weights.IMAGENET1K_V1: its",
            "64x64",
        ),
        # The enum named, not DEFAULT: V2's transforms resize to 232 before the 224 crop.
        ("torchvision:resnet50?weights=IMAGENET1K_V2", None, 224, "IMAGENET1K_V2", "232 px"),
        ("torchvision:inception_v3", "builtin:uci-digits", 299, "Inception_V3", "?size=96x96"),
        ("torchvision:vit_b_16", "builtin:shapes", 224, "ViT_B_16", "takes only 224x224"),
    ],
)
def test_size_and_advice_follow_the_weights_named(caplog, source, target, size, weights, advice):
    caplog.set_level(logging.WARNING, LOGGER)
    kwargs = {"source": source} | ({"target": target} if target else {})
    p = planned(SweepParams(**kwargs))
    assert f"size={size}x{size}&crop=center:" in p.target
    if target is None:  # the default target; V2 resizes to 232 before the 224 crop
        assert p.target == f"builtin:uci-digits?size={size}x{size}&crop=center:{224 / 232:g}"
    (line,) = notices(caplog)
    assert weights in line and advice in line


def test_a_crop_of_the_users_own_is_kept():
    p = planned(
        PipelineParams(source="torchvision:resnet18", target="builtin:mnist-5k?crop=content")
    )
    assert p.target == "builtin:mnist-5k?crop=content&size=224x224"


def test_center_crop_matches_torchvision_resize_then_center_crop():
    """crop=center:<keep> then the resize gives torchvision's Resize(r) + CenterCrop(c) window.
    On a ramp image every pixel says where it came from: a window off by 4 px would be off by
    ~2 levels everywhere; resampling differences are well below 1 (512×384 px, r = 256, c = 224)."""
    import numpy as np
    import torch
    from torchvision.transforms import v2

    from warmstart.data.transforms import apply_crop, resize_image

    y, x = np.mgrid[0:384, 0:512]
    image = np.stack([0.45 * x, 0.6 * y, 0.3 * x + 0.2 * y]).astype(np.uint8)
    ours = resize_image(apply_crop(image, "center:0.875", (224, 224)), (224, 224))
    ref = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224)])(torch.from_numpy(image))
    assert ours.shape == (3, 224, 224)
    assert np.abs(ours.astype(float) - ref.numpy()).mean() < 1.0
    shifted = resize_image(image[:, 28:364, 92:428], (224, 224))  # the window 4 px off
    assert np.abs(shifted.astype(float) - ref.numpy()).mean() > 1.5  # the test can tell


def test_input_preset_reads_the_enum_transforms():
    preset = tv.input_preset("mobilenet_v3_small")
    assert preset == tv.InputPreset("MobileNet_V3_Small_Weights.IMAGENET1K_V1", 256, 224, 32)
    assert tv.input_preset("vit_b_16", "IMAGENET1K_SWAG_E2E_V1").crop == 384
    with pytest.raises(tv.UnknownNameError):
        tv.input_preset("resnt18")
