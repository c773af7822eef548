"""Label efficiency's named scenarios: ``preset(name, **overrides)`` -> ``SweepParams``.

The flow (flows/label_efficiency.py) composes the same cached stages as the transfer pipeline, so
a source model is pretrained once per strategy and reused across every k and seed; its table and
figure are ``warmstart.reports.sweep``'s.
"""

from __future__ import annotations

from warmstart.errors import ConfigError
from warmstart.params import SweepParams

# Named scenarios of the label-efficiency flow: `preset(name, **overrides)` -> SweepParams.
PRESETS: dict[str, dict] = {
    # Issue 16: the regime where unlabelled images vastly outnumber labels (Paine et al. 2014).
    # 24,000 hard 32×32 shapes, 10 classes: 2,400 test, 1,200 validation and a 20,400-image
    # unlabelled pool that the label-free strategies pretrain on; k = 1..20 labels per class
    # (≈ 100-2,000 unlabelled images per label). The source (easy shapes) is used only if a
    # labelled strategy ("supervised") is added.
    "shapes-hard-32": dict(
        source="builtin:shapes?n=2000&size=32x32",
        target="builtin:shapes-hard?n=24000&size=32x32",
        strategies=["gan", "autoencoder", "simclr"],
        transfer_modes=["linear_probe"],
        unsupervised_data="target_pool",
        val_fraction=0.05,
        test_fraction=0.1,
        pretrain_epochs=2,
        k_values=[1, 5, 10, 20],
    ),
}


def preset(name: str, **overrides: object) -> SweepParams:
    """The label-efficiency parameters of a named scenario, with `overrides` (e.g. a smaller
    ``target`` or fewer ``seeds``) applied on top; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(sorted(PRESETS))}")
    return SweepParams(**{**PRESETS[name], **overrides})
