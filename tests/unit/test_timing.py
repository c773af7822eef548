"""Where a stage's seconds go (``warmstart.timing``) and how a stage reports them, without
services: nested spans count once, the split adds up to the time held, the run's summary line,
and a stage's epoch metrics sent in one batch at its end (its time split with them)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from warmstart import timing
from warmstart.tasks import stage_progress, stage_runs


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock_time(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(timing.time, "perf_counter", fake)
    return fake


def test_nested_spans_count_once_and_the_split_adds_up_to_the_time_held(clock_time):
    clock = timing.StageClock(waited=4.0)
    with timing.clocked(clock):
        with timing.span("load"):
            clock_time.now += 1.0
        with timing.span("train"):
            clock_time.now += 6.0
            with timing.span("upload"):  # an epoch's checkpoint, inside training
                clock_time.now += 0.5
            with timing.span("log"):
                clock_time.now += 0.25
        clock_time.now += 0.25  # claimed by no span
    split = clock.split()
    assert split == {
        "wait": 4.0,
        "load": 1.0,
        "train": 6.0,
        "upload": 0.5,
        "log": 0.25,
        "other": 0.25,
        "held": 8.0,
    }
    assert sum(v for k, v in split.items() if k not in ("wait", "held")) == split["held"]


def test_spans_outside_a_stage_do_nothing_and_unknown_phases_are_refused(clock_time):
    with timing.span("train"):  # no clock: nothing to add to, nothing raised
        clock_time.now += 1.0
    clock = timing.StageClock()
    with pytest.raises(ValueError, match="unknown stage phase 'wait'"):
        with clock.span("wait"):
            pass


def test_summary_line_and_overhead_from_the_stages_splits():
    a = dict(wait=0.0, load=0.5, train=8.0, upload=0.5, log=0.5, other=0.5, held=10.0)
    b = dict(wait=30.0, load=0.0, train=9.0, upload=0.0, log=1.0, other=0.0, held=10.0)
    assert timing.overhead([a, b]) == pytest.approx(0.15)
    assert timing.summary_line([a, b], wall=40.0, cpu=76.0) == (
        "training 85% of stage time, overhead 15% (load 2%, upload 2%, log 8%, other 2%), "
        "2 stages waited 30 s for a slot, 1.9 cores busy"
    )
    assert timing.summary_line([], wall=10.0, cpu=5.0) == "no stage trained; 0.5 cores busy"
    assert timing.card_line(a) == (
        "10.0 s held (train 80% · load 5% · upload 5% · log 5% · other 5%), waited 0.0 s for a slot"
    )


class Tracker:
    """What the stage's run received: metric batches, the end, the progress card."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, dict]]] = []
        self.metrics: list[dict] = []
        self.ended: list[tuple] = []
        self.cards: list[str] = []


@pytest.fixture
def tracker(monkeypatch) -> Tracker:
    t = Tracker()
    tr = stage_progress.tracking
    monkeypatch.setattr(tr, "log_metric_rows", lambda run_id, rows: t.batches.append(rows))
    monkeypatch.setattr(tr, "log_metrics", lambda run_id, m, step=None: t.metrics.append(m))
    monkeypatch.setattr(tr, "start_run", lambda *a, **k: "run-1")
    monkeypatch.setattr(tr, "end_run", lambda run_id, *a, **k: t.ended.append((run_id, *a)))
    monkeypatch.setattr(stage_progress, "create_progress_artifact", lambda **k: "card")
    monkeypatch.setattr(
        stage_progress,
        "update_progress_artifact",
        lambda artifact_id, progress, description: t.cards.append(description),
    )
    monkeypatch.setattr(stage_progress, "system_metrics", lambda run_id: None)
    logger = SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None)
    monkeypatch.setattr(stage_progress, "get_run_logger", lambda: logger)
    monkeypatch.setattr(stage_runs, "waited_for_slot", lambda: 2.5)
    return t


RUN = SimpleNamespace(experiment_id="1", run_id="parent", flow_run_id="f1", kind="pipeline")
PARAMS = {"arm": "scratch", "seed": 0, "k_shot": 5}


def test_a_stage_sends_its_epochs_in_one_batch_and_ends_with_its_time_split(tracker):
    with stage_runs.stage_run(RUN, "train-scratch[scratch/seed=0]", PARAMS, {}, 5) as progress:
        for epoch in range(1, 6):
            progress(epoch, {"train_loss": 1.0 / epoch, "val_acc": 0.1 * epoch})
        assert tracker.batches == []  # a short stage: nothing sent while it trains
    assert [[step for step, _ in rows] for rows in tracker.batches] == [[1, 2, 3, 4, 5]]
    assert tracker.batches[0][4][1] == {"train_loss": 0.2, "val_acc": 0.5}
    (split,) = tracker.metrics
    assert set(split) == {f"time_{p}_s" for p in (*timing.PHASES, "held")}
    assert split["time_wait_s"] == 2.5
    assert tracker.ended == [("run-1",)]
    # the card: opened, updated at the last epoch (no more than every CARD_EVERY_S), then done
    assert len(tracker.cards) == 2
    assert tracker.cards[-1].startswith("scratch seed 0: 5 epoch(s) trained; ")
    assert "waited 2.5 s for a slot" in tracker.cards[-1]


def test_metrics_go_out_every_flush_interval_while_a_long_stage_trains(tracker, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(stage_progress.time, "monotonic", lambda: now[0])
    with stage_runs.stage_run(RUN, "s", PARAMS, {}, 4) as progress:
        for epoch in range(1, 5):
            now[0] += 0.6 * stage_progress.FLUSH_EVERY_S
            progress(epoch, {"val_acc": 0.5})
    # a sign of life at least every FLUSH_EVERY_S: after epochs 2 and 4, then nothing left
    assert [[s for s, _ in rows] for rows in tracker.batches] == [[1, 2], [3, 4]]


def test_a_failed_stage_still_sends_its_metrics_and_ends_failed(tracker):
    with pytest.raises(RuntimeError, match="loss became nan"):
        with stage_runs.stage_run(RUN, "s", PARAMS, {}, 3) as progress:
            progress(1, {"val_acc": 0.4})
            raise RuntimeError("loss became nan")
    assert tracker.batches == [[(1, {"val_acc": 0.4})]]
    assert tracker.ended == [("run-1", "FAILED")]
