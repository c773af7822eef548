"""Where the stages' time went, as people read it: one stage's split on its Prefect progress
card, and the one-line summary at the end of `warmstart run`. Pure renderers of the splits that
``warmstart.timing.StageClock`` measured (seconds per phase and ``held``)."""

from __future__ import annotations

from collections.abc import Mapping


def overhead(splits: list[Mapping[str, float]]) -> float:
    """Over all stages: seconds a stage held its slot but did not train, over seconds held."""
    held = sum(s["held"] for s in splits)
    return (held - sum(s["train"] for s in splits)) / held if held > 0 else 0.0


def summary_line(splits: list[Mapping[str, float]], wall: float, cpu: float) -> str:
    """``training 82% of stage time, overhead 5% (load 1%, upload 2%, log 2%), waiting 40 s,
    1.9 cores busy``: the stages' split summed, and the process's CPU seconds over the wall."""
    if not splits:
        return f"no stage trained; {cpu / max(wall, 1e-9):.1f} cores busy"
    held = sum(s["held"] for s in splits) or 1e-9
    parts = ", ".join(
        f"{phase} {100 * sum(s[phase] for s in splits) / held:.0f}%"
        for phase in ("load", "upload", "log", "other")
    )
    return (
        f"training {100 * sum(s['train'] for s in splits) / held:.0f}% of stage time, "
        f"overhead {100 * overhead(splits):.0f}% ({parts}), "
        f"{len(splits)} stages waited {sum(s['wait'] for s in splits):.0f} s for a slot, "
        f"{cpu / max(wall, 1e-9):.1f} cores busy"
    )


def card_line(split: Mapping[str, float]) -> str:
    """One stage's split for its progress card: ``12.3 s held: train 91% · load 2% · …``."""
    held = split["held"] or 1e-9
    parts = " · ".join(
        f"{phase} {100 * split[phase] / held:.0f}%"
        for phase in ("train", "load", "upload", "log", "other")
    )
    return f"{split['held']:.1f} s held ({parts}), waited {split['wait']:.1f} s for a slot"
