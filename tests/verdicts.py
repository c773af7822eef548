"""The verdict the gate's rules give on the numbers a run reported (its ``gate_*`` MLflow tags),
so a test whose inputs do not fix the verdict still checks it against them, both ways."""

from __future__ import annotations

# Rules that refuse whatever the numbers say: the leakage guard, no confirmation seeds, and a
# champion that could not be scored on this run's test images.
NUMBERLESS = {"blocked", "unconfirmed", "champion-incomparable"}


def expected_verdict(tags: dict[str, str]) -> str:
    """``promoted`` iff no numberless rule refused, the lower CI bound of (candidate − scratch)
    is above the margin, and the served model is not worse than the champion it was compared
    with (``warmstart.promotion.policy.decide``, rules 4 and 5)."""
    if tags["gate_rule"] in NUMBERLESS:
        return "not promoted"
    beats_scratch = float(tags["gate_delta_ci_low"]) > float(tags["gate_margin"])
    not_worse = float(tags.get("gate_delta_vs_champion", "0")) >= 0.0
    return "promoted" if beats_scratch and not_worse else "not promoted"
