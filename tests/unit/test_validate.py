"""stages.make_plan: every bad input is one ConfigError line naming the flag and the fix, before
anything is ingested (no services: these run without the stack)."""

from __future__ import annotations

import pytest

from warmstart.data import load_source, make_splits
from warmstart.errors import ConfigError, DataError
from warmstart.params import PipelineParams, SweepParams
from warmstart.stages import make_plan
from warmstart.stages.checks import class_counts, parse_flag
from warmstart.stages.validate import largest_k


def _line(**params) -> str:
    with pytest.raises(ConfigError) as info:
        make_plan(PipelineParams(**params))
    line = str(info.value)
    assert "\n" not in line
    return line


def test_defaults_plan_the_demo():
    plan = make_plan(PipelineParams())
    (source,) = plan.sources
    assert (source.spec, source.provider, source.needs_dataset) == (
        "builtin:mnist-5k?crop=content",
        "pretrain",
        True,
    )
    assert source.labels == ("supervised", "gan", "autoencoder") and source.learned_from == ()
    assert plan.target == plan.params.target == "builtin:uci-digits"
    assert plan.k_values == (5,) and plan.at(5) is plan.params
    assert (plan.split.val_fraction, plan.split.test_fraction, plan.split.seed) == (0.15, 0.2, 0)


def test_k_shot_too_large_names_flag_and_largest_value():
    line = _line(k_shot=5000)
    assert line.startswith("--k-shot 5000 ")
    assert "use --k-shot 113 or less" in line


def test_largest_k_matches_make_splits():
    params = PipelineParams()
    limit, _ = largest_k(params, class_counts("--target", parse_flag("--target", params.target)))
    ds = load_source(params.target)
    make_splits(ds, seed=0, val_fraction=0.15, test_fraction=0.2, k_shot=limit)
    with pytest.raises(DataError):
        make_splits(ds, seed=0, val_fraction=0.15, test_fraction=0.2, k_shot=limit + 1)
    make_plan(PipelineParams(k_shot=limit))


def test_a_sweep_is_planned_whole():
    """Every k of the sweep, not only its first: the CLI and the flow plan the SweepParams."""
    with pytest.raises(ConfigError, match=r"^--k-values 900 .*use --k-values 113 or less"):
        make_plan(SweepParams(k_values=[5, 900]))
    plan = make_plan(SweepParams(k_values=[20, 1, 5]))
    assert plan.k_values == (1, 5, 20)
    assert [plan.at(k).k_shot for k in plan.k_values] == [1, 5, 20]
    assert all(plan.at(k).source == plan.source.spec for k in plan.k_values)


def test_class_selection_counts_only_selected_classes(tmp_path):
    for cls, n in (("a", 40), ("b", 12), ("c", 3)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            (tmp_path / cls / f"{i}.png").write_bytes(b"")  # listed, never decoded
    line = _line(target=f"imagefolder:{tmp_path}?size=16x16&classes=a,b", k_shot=20)
    assert "class 'b'" in line and "use --k-shot 8 or less" in line


def test_unknown_builtin():
    line = _line(target="builtin:mnist-50k")
    assert line.startswith("--target builtin:mnist-50k: unknown builtin dataset 'mnist-50k'")
    assert "uci-digits" in line


def test_missing_local_path():
    assert _line(target="imagefolder:/no/such/folder").startswith(
        "--target imagefolder:/no/such/folder: /no/such/folder does not exist"
    )
    assert _line(source="cifar10:/no/cifar.tar.gz").startswith("--source cifar10:/no/cifar.tar.gz")


def test_bad_options():
    assert "unknown option 'colour'" in _line(target="builtin:uci-digits?colour=red")
    assert _line(source="builtin:mnist-5k?channels=2").startswith("--source: ")
    assert "size=" in _line(target="builtin:uci-digits?size=big")


def test_image_size_against_backbone():
    line = _line(target="builtin:uci-digits?size=4x4")
    assert line.startswith("--target builtin:uci-digits?size=4x4: images of 4x4 px")
    assert "8..1024" in line and "?size=HxW" in line
    assert _line(source="builtin:mnist-5k?size=4x4").startswith("--source ")


def test_modes_and_backbone_are_refused_by_params():
    with pytest.raises(ValueError, match="freeze=layer9"):
        PipelineParams(transfer_modes=["freeze=layer9"])
    with pytest.raises(ValueError, match="unknown backbone"):
        PipelineParams(backbone="vit-h")


def test_training_pool_is_make_splits_arithmetic_per_class():
    """One allocation for both (data.splits.held_out); an empty class has an empty pool rather
    than looping (a class folder with only test images)."""
    from warmstart.data.splits import held_out
    from warmstart.stages.checks import training_pool

    for n in range(0, 40):
        n_test, n_val = held_out(n, 0.15, 0.2, False)
        pool = training_pool(n, val_fraction=0.15, test_fraction=0.2, predefined=False)
        assert pool == max(n - n_test - n_val, 0)
        assert pool >= 1 or n == 0
    assert training_pool(0, val_fraction=0.15, test_fraction=0.2, predefined=True) == 0
