"""Every run ends — through the CLI against the real services: SIGTERM ends the flow run and its
MLflow runs within seconds; kill -9 leaves them open, and the next run resumes from the last
epoch checkpoint and closes what the killed run left RUNNING."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.flows.cli_runs import (
    all_flow_run_ids,
    checkpoints,
    flow_runs,
    rerun,
    runs_of,
    start,
    tiny,
    unfinished,
    wait_for_training,
)

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_sigterm_ends_the_flow_run_and_its_mlflow_runs_within_seconds(stack):
    earlier = all_flow_run_ids(stack)
    before = checkpoints()
    proc = start(tiny("5-8"))
    wait_for_training(proc, before)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 130
    running = [r for r in runs_of("uci-digits-5-8") if r.info.status == "RUNNING"]
    assert running == []
    ended = [r for r in runs_of("uci-digits-5-8") if r.info.status == "KILLED"]
    assert ended and all("warmstart.end_reason" in r.data.tags for r in ended)
    assert flow_runs(stack, "RUNNING", earlier) == []
    assert flow_runs(stack, "CANCELLED", earlier), "the interrupted flow run is Cancelled"


def test_kill_9_leaves_runs_that_the_next_run_closes(stack):
    earlier = all_flow_run_ids(stack)
    before = checkpoints()
    proc = start(tiny("6-9"))
    wait_for_training(proc, before)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumable = unfinished(before)
    assert resumable, "the kill came while a fine-tuning stage had a checkpoint and no result"
    left = [r for r in runs_of("uci-digits-6-9") if r.info.status == "RUNNING"]
    assert left, "a killed process leaves its MLflow runs RUNNING"
    assert flow_runs(stack, "RUNNING", earlier), "and its Prefect flow run Running"
    time.sleep(3)
    summary = rerun(tiny("6-9"), WARMSTART_STALE_AFTER_S="2")
    # every stage the kill interrupted after a checkpoint resumes from it, none starts over
    assert summary["resumed"] == len(resumable), (summary["resumed"], resumable)
    statuses = {r.info.run_id: r.info.status for r in runs_of("uci-digits-6-9")}
    assert all(statuses[r.info.run_id] == "KILLED" for r in left)
    assert flow_runs(stack, "RUNNING", earlier) == []
    crashed = flow_runs(stack, "CRASHED", earlier)
    assert any("stale" in (r["state"]["message"] or "") for r in crashed)
