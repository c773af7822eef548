"""Live progress of `warmstart run` / `sweep` on stderr: a rich display of the stages training
now (epoch bars, last loss and validation accuracy) above a count of stages done, or plain lines
when stderr is not a terminal. The per-epoch log lines Prefect would print are left to the flow
run's logs (the display already shows them); with ``--json`` nothing is displayed."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from warmstart import timing
from warmstart.cli.app import err_console
from warmstart.tasks.stage_progress import EPOCH_RECORD, StageEvent, listening


class WithoutEpochLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, EPOCH_RECORD, False)


def console_handlers() -> list[logging.Handler]:
    """The handlers that print Prefect's run logs on this terminal (not the API's)."""
    from prefect.logging.handlers import PrefectConsoleHandler  # deferred: heavy (prefect)

    found = []
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        found += [
            h for h in logging.getLogger(name).handlers if isinstance(h, PrefectConsoleHandler)
        ]
    return found


class PlainLines:
    """One line per stage start, epoch and end: for logs and pipes."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, event: StageEvent) -> None:
        if event.kind == "start":
            epochs = f" ({event.total} epochs)" if event.total else ""
            text = f"{event.label}: started{epochs}"
        elif event.kind == "epoch":
            text = f"{event.label} · epoch {event.epoch}/{event.total} · {event.summary}"
        elif event.kind in ("done", "failed"):
            text = f"{event.label}: {event.kind} — {event.summary}"
        else:
            return
        self.console.print(text.rstrip(" ·"), highlight=False, markup=False, soft_wrap=True)

    def stop(self) -> None:
        return None


class LiveStages:
    """A rich live display: one bar per stage training now, one for the stages done; a finished
    stage leaves one line above the display."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[summary]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        # done of started: the flow decides some stages late (confirmation seeds)
        self.overall = self.bars.add_task("stages done", total=0, summary="")
        self.rows: dict[str, Any] = {}
        self.started: dict[str, float] = {}  # stages training now: when they started
        self.done = 0
        self.lock = threading.Lock()
        self.bars.start()

    def __call__(self, event: StageEvent) -> None:
        with self.lock:  # events come from every training thread
            self._show(event)

    def _show(self, event: StageEvent) -> None:
        label = escape(event.label)
        if event.kind == "abandon":
            self.stop()
        elif event.kind == "start":
            total = event.total or None  # None: no epochs to count (a pulsing bar)
            self.rows[event.key] = self.bars.add_task(label, total=total, summary="")
            self.started[event.key] = time.monotonic()
            self.bars.update(self.overall, total=len(self.started) + self.done)
        elif event.kind == "epoch" and event.key in self.rows:
            summary = escape(event.summary)
            self.bars.update(self.rows[event.key], completed=event.epoch, summary=summary)
        elif event.kind in ("done", "failed") and event.key in self.rows:
            self.bars.remove_task(self.rows.pop(event.key))
            seconds = time.monotonic() - self.started.pop(event.key)
            mark = "[green]✓[/]" if event.kind == "done" else "[red]✗[/]"
            self.bars.console.print(
                f"{mark} {label}: {escape(event.summary)} ({seconds:.1f} s)", highlight=False
            )
            self.done += 1
            self.bars.update(self.overall, completed=self.done)

    def stop(self) -> None:
        self.bars.stop()  # idempotent; shows the cursor again


class StageTimes:
    """Hears every stage's time split (its "done" event) and the process's CPU seconds, for the
    one-line summary at the end of `warmstart run` (``timing.summary_line``)."""

    def __init__(self) -> None:
        self.splits: list[dict] = []
        self.lock = threading.Lock()
        self.t0, self.cpu0 = time.monotonic(), _cpu_seconds()

    def __call__(self, event: StageEvent) -> None:
        if event.kind == "done" and event.split:
            with self.lock:
                self.splits.append(dict(event.split))

    def line(self) -> str:
        wall, cpu = time.monotonic() - self.t0, _cpu_seconds() - self.cpu0
        with self.lock:
            return timing.summary_line(self.splits, wall, cpu)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@contextmanager
def stage_times() -> Iterator[StageTimes]:
    """Collect the stages' time splits while the block runs (stages of this process only)."""
    times = StageTimes()
    with listening(times):
        yield times


@contextmanager
def stage_display(enabled: bool) -> Iterator[None]:
    """Show the stages of the flow this process runs while the block runs; Prefect's per-epoch
    log lines stay off this terminal either way (they are in the flow run's logs)."""
    with ExitStack() as stack:
        quiet = WithoutEpochLines()
        for handler in console_handlers():
            handler.addFilter(quiet)
            stack.callback(handler.removeFilter, quiet)
        if enabled:
            if err_console.is_terminal:
                display: LiveStages | PlainLines = LiveStages(err_console)
                _print_logs_above(stack)
            else:
                display = PlainLines(err_console)
            stack.callback(display.stop)
            stack.enter_context(listening(display))
        yield


def _print_logs_above(stack: ExitStack) -> None:
    """Prefect's console handlers write to the stderr they were made with; while the display is
    live they print through it instead (above the bars), so neither garbles the other."""
    for handler in console_handlers():
        original = handler.console.file
        handler.console.file = sys.stderr  # rich's proxy while the display is live
        stack.callback(setattr, handler.console, "file", original)
