"""A `torchvision:` source without `?size=` on the target: the target takes the input size of the
weights' own transforms, with a one-line notice that says how to train faster (no services)."""

from __future__ import annotations

import logging

import pytest

from warmstart.models.backbones import torchvision as tv
from warmstart.params import PipelineParams, SweepParams


def notices(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "warmstart.params"]


def test_target_without_size_takes_the_weights_crop_with_one_notice(caplog):
    caplog.set_level(logging.WARNING, "warmstart.params")
    p = PipelineParams(source="torchvision:resnet18", target="builtin:shapes?n=30")
    assert p.target == "builtin:shapes?n=30&size=224x224"
    (line,) = notices(caplog)
    assert "resized to 224x224 px, the input size of ResNet18_Weights.IMAGENET1K_V1" in line
    assert "shorter side 256 px, centre crop 224" in line
    assert "add ?size=64x64 to --target (32 px and up fit resnet18)" in line
    assert "\n" not in line
    again = PipelineParams(**p.model_dump())  # Prefect re-validates: no second notice
    assert again.target == p.target and len(notices(caplog)) == 1


def test_an_explicit_size_wins_and_says_nothing(caplog):
    caplog.set_level(logging.WARNING, "warmstart.params")
    p = PipelineParams(source="torchvision:resnet18", target="imagefolder:/x?size=64x48")
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
            "of resnet18's DEFAULT weights ResNet18_Weights.IMAGENET1K_V1 (its",
            "64x64",
        ),
        # The enum named, not DEFAULT: V2's transforms resize to 232 before the 224 crop.
        ("torchvision:resnet50?weights=IMAGENET1K_V2", None, 224, "IMAGENET1K_V2", "232 px"),
        ("torchvision:inception_v3", "builtin:uci-digits", 299, "Inception_V3", "?size=96x96"),
        ("torchvision:vit_b_16", "builtin:shapes", 224, "ViT_B_16", "takes only 224x224"),
    ],
)
def test_size_and_advice_follow_the_weights_named(caplog, source, target, size, weights, advice):
    caplog.set_level(logging.WARNING, "warmstart.params")
    kwargs = {"source": source} | ({"target": target} if target else {})
    p = SweepParams(**kwargs)
    assert p.target.endswith(f"size={size}x{size}")
    if target is None:
        assert p.target == f"builtin:uci-digits?size={size}x{size}"  # the default target
    (line,) = notices(caplog)
    assert weights in line and advice in line


def test_input_preset_reads_the_enum_transforms():
    preset = tv.input_preset("mobilenet_v3_small")
    assert preset == tv.InputPreset("MobileNet_V3_Small_Weights.IMAGENET1K_V1", 256, 224, 32)
    assert tv.input_preset("vit_b_16", "IMAGENET1K_SWAG_E2E_V1").crop == 384
    with pytest.raises(tv.UnknownNameError):
        tv.input_preset("resnt18")
