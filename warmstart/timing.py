"""Where a training stage's seconds go: waiting for its slot, loading data, training, uploading
(checkpoints, final weights, the result) and logging (MLflow, Prefect), measured with
``time.perf_counter`` spans around each step.

A stage opens a ``StageClock`` (``clocked``); code anywhere below it, in the same thread, marks a
step with ``span(phase)``. Spans nest: a span's own time excludes the spans inside it, so an
epoch's checkpoint upload inside ``train`` counts once, as ``upload``. Outside a clocked stage
``span`` does nothing. Work handed to another thread is not on the stage's clock. Stdlib only.
What people read of it (a stage's progress card, the run's summary line) is rendered in
``warmstart.reports.timing``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
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
