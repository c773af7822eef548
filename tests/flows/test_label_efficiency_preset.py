"""The shapes-hard-32 preset of the label-efficiency flow (issue 16) at tiny size: label-free
pretraining on the target's unlabelled pool, probed at every k, with the compute beside it."""

from __future__ import annotations

import pytest

from warmstart.errors import ConfigError
from warmstart.sweep import PRESETS, preset

pytestmark = [pytest.mark.services, pytest.mark.slow]

TINY = dict(
    source="builtin:shapes?n=60&size=8x8",
    target="builtin:shapes-hard?n=400&size=8x8",
    strategies=["simclr"],
    seeds=1,
    pretrain_epochs=1,
    finetune_epochs=2,
    k_values=[1],
)


def test_preset_is_the_scenario_and_rejects_unknown_names():
    p = preset("shapes-hard-32")
    assert p.target == "builtin:shapes-hard?n=24000&size=32x32" and p.k_values == [1, 5, 10, 20]
    assert p.unsupervised_data == "target_pool" and {"gan", "autoencoder", "simclr"} <= set(
        p.strategies
    )
    # 24,000 images: 10% test, 5% validation, the rest (20,400) unlabelled pool
    assert round(24000 * (1 - p.val_fraction - p.test_fraction)) == 20400
    assert (
        preset("shapes-hard-32", seeds=1).seeds == 1
        and p.seeds == 3
        and "seeds" not in PRESETS["shapes-hard-32"]
    )
    with pytest.raises(ConfigError, match="shapes-hard-32"):
        preset("shapes-hard")


def test_tiny_preset_runs_every_arm_with_its_compute(stack):
    from warmstart.flows.label_efficiency import run_preset

    out = run_preset("shapes-hard-32", **TINY)
    rows = out["rows"]
    arms = {"simclr/linear_probe", "scratch", "control/random-init-frozen", "control/pixel-logreg"}
    assert {(r["arm"], r["k"]) for r in rows} == {(a, 1) for a in arms}
    cost = out["pretrain_compute"]["simclr"]
    # one epoch over the unlabelled pool: 400 images less 10% test and 5% validation
    assert cost["passes"] == 1 and cost["images"] == 340 and cost["seconds"] > 0
    probe = next(r for r in rows if r["arm"] == "simclr/linear_probe")
    assert probe["pretrain_images"] == cost["images"]
    assert next(r for r in rows if r["arm"] == "scratch")["pretrain_images"] == 0
    assert "pretraining (epochs × images, wall)" in out["markdown"]
    assert f"{cost['images']:,} img (1 ep)" in out["markdown"]
