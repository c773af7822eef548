"""Where a training stage's seconds go: waiting for its slot, loading data, training, uploading
(checkpoints, final weights, the result) and logging (MLflow, Prefect), measured with
``time.perf_counter`` spans around each step.

A stage opens a ``StageClock`` (``clocked``); code anywhere below it, in the same thread, marks a
step with ``span(phase)``. Spans nest: a span's own time excludes the spans inside it, so an
epoch's checkpoint upload inside ``train`` counts once, as ``upload``. Outside a clocked stage
``span`` does nothing. Work handed to another thread is not on the stage's clock. Stdlib only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

# The phases, in the order a stage meets them; "other" is what no span claimed.
PHASES = ("wait", "load", "train", "upload", "log", "other")


class StageClock:
    """Seconds per phase of one stage. ``wait`` is given (the time before the stage held its
    slot); the rest is measured from the clock's creation (the stage holds its slot)."""

    def __init__(self, waited: float = 0.0) -> None:
        self.start = time.perf_counter()
        self.spent = dict.fromkeys(PHASES, 0.0)
        self.spent["wait"] = max(0.0, float(waited))
        self._inner = [0.0]  # per open span: seconds its nested spans took

    @contextmanager
    def span(self, phase: str) -> Iterator[None]:
        if phase not in PHASES or phase in ("wait", "other"):
            raise ValueError(f"unknown stage phase {phase!r}: one of load, train, upload, log")
        t0 = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            self.spent[phase] += elapsed - self._inner.pop()
            self._inner[-1] += elapsed

    def split(self) -> dict[str, float]:
        """Seconds per phase; ``held`` is the time the stage has held its slot so far."""
        held = time.perf_counter() - self.start
        out = dict(self.spent)
        claimed = sum(v for k, v in out.items() if k not in ("wait", "other"))
        out["other"] = max(0.0, held - claimed)
        out["held"] = held
        return out


_CLOCK: ContextVar[StageClock | None] = ContextVar("warmstart_stage_clock", default=None)


@contextmanager
def clocked(clock: StageClock) -> Iterator[StageClock]:
    """Make ``clock`` the one ``span`` adds to, in this thread, while the block runs."""
    token = _CLOCK.set(clock)
    try:
        yield clock
    finally:
        _CLOCK.reset(token)


@contextmanager
def span(phase: str) -> Iterator[None]:
    """Count the block's own seconds as ``phase`` on the current stage's clock (if any)."""
    clock = _CLOCK.get()
    if clock is None:
        yield
        return
    with clock.span(phase):
        yield


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
