import pytest

from warmstart.data import SourceSpec, parse_spec
from warmstart.errors import DataError


def test_parses_every_option():
    spec = parse_spec(
        "builtin:shapes?size=16x24&channels=1&classes=0-2,5&n=40&num_classes=6&seed=7"
        "&crop=content&skip_corrupt=true"
    )
    assert spec == SourceSpec(
        kind="builtin",
        location="shapes",
        size=(16, 24),
        channels=1,
        classes=("0-2", "5"),
        n=40,
        num_classes=6,
        seed=7,
        crop="content",
        skip_corrupt=True,
    )
    assert parse_spec(spec.canonical()) == spec


def test_s3_and_paths_keep_their_colons_and_names():
    spec = parse_spec("imagefolder:s3://bucket/pets/v1?size=32&classes=cat,dog")
    assert (spec.kind, spec.location, spec.size, spec.classes) == (
        "imagefolder",
        "s3://bucket/pets/v1",
        (32, 32),
        ("cat", "dog"),
    )
    assert spec.is_s3
    assert parse_spec("cifar10:/data/c%3Fx?classes=0,1").location == "/data/c?x"


def test_a_centre_crop_keeps_its_fraction():
    assert parse_spec("builtin:shapes?crop=Center:0.8750").crop == "center:0.875"
    assert parse_spec("imagefolder:/p?crop=center:1").crop == "center:1"


@pytest.mark.parametrize(
    "bad, named",
    [
        ("mnist-5k", "mnist-5k"),
        ("zip:/x", "zip"),
        ("builtin:shapes?colour=red", "colour"),
        ("builtin:shapes?size=big", "big"),
        ("builtin:shapes?channels=4", "channels='4'"),
        ("builtin:shapes?n=0", "n=0"),
        ("builtin:shapes?n=3&n=4", "'n'"),
        ("builtin:shapes?crop=center", "center"),
        ("builtin:shapes?crop=center:1.5", "crop=center:0.875"),
        ("builtin:shapes?crop=middle:0.5", "middle"),
        ("builtin:shapes?classes=1,,2", "1,,2"),
        ("builtin:", "no location"),
    ],
)
def test_bad_specs_name_the_input(bad, named):
    with pytest.raises(DataError) as err:
        parse_spec(bad)
    assert named in str(err.value)
    assert "\n" not in str(err.value)
