"""What a user sees of a training stage in Prefect, against the real server: one INFO line per
epoch in the flow run's logs, one progress artifact per stage updated in place, and the report
and table first in the flow run's Artifacts (keys per target). One tiny flow, no training."""

from __future__ import annotations

import re

import httpx
import pytest
from mlflow.tracking import MlflowClient
from prefect import flow, task
from prefect.logging.handlers import APILogWorker
from prefect.runtime import flow_run

from warmstart import tracking
from warmstart.contracts import RunContext
from warmstart.tasks.flow_artifacts import artifact_key, flow_run_artifacts, publish_report
from warmstart.tasks.stage_progress import listening
from warmstart.tasks.stage_runs import stage_run

pytestmark = [pytest.mark.services]

TARGET = "stage-reporting-test"
ROWS = [{"epoch": e, "train_loss": 1.0 / e, "val_acc": 0.5 + 0.1 * e} for e in (1, 2, 3)]


@task(name="finetune-target", task_run_name="finetune-target[supervised/finetune/seed=1]")
def fake_stage(run: RunContext) -> str:
    params = {"arm": "supervised/finetune", "seed": 1, "k_shot": 5}
    with stage_run(run, "finetune-target[supervised/finetune/seed=1]", params, {}, 3) as progress:
        for row in ROWS:
            progress(row["epoch"], {k: v for k, v in row.items() if k != "epoch"})
    return progress.run_id


@task(name="publish")
def publish() -> None:
    table = [{"arm": "scratch", "test acc": "80.0"}, {"arm": "supervised/finetune", "n": 1.5}]
    publish_report(
        "# verdict\n\nnot promoted",
        artifact_key("gate-verdict", TARGET),
        table,
        artifact_key("accuracy-table", TARGET),
        "gate: not promoted",
    )


@flow(name="stage-reporting-test")
def reporting_flow() -> dict:
    experiment = tracking.experiment_id(TARGET)
    parent = tracking.start_run(experiment, "parent")
    run = RunContext(experiment_id=experiment, run_id=parent, flow_run_id=str(flow_run.get_id()))
    stage_run_id = fake_stage(run)
    publish()
    tracking.end_run(parent)
    return {"flow_run_id": run.flow_run_id, "stage_run_id": stage_run_id}


def test_epoch_lines_progress_artifact_and_report_first(stack):
    heard = []
    with listening(heard.append):
        out = reporting_flow()
    APILogWorker.drain_all(timeout=10)
    assert [(e.kind, e.epoch) for e in heard] == [
        ("start", 0),
        ("epoch", 1),
        ("epoch", 2),
        ("epoch", 3),
        ("done", 3),
    ]
    api, auth, ours = stack.env["PREFECT_API_URL"], stack.prefect_auth, out["flow_run_id"]

    body = {"logs": {"flow_run_id": {"any_": [ours]}}, "sort": "TIMESTAMP_ASC"}
    logs = httpx.post(f"{api}/logs/filter", json=body, auth=auth, timeout=10).json()
    epoch_lines = [log["message"] for log in logs if " · epoch " in log["message"]]
    assert epoch_lines == [
        "supervised/finetune seed 1 · epoch 1/3 · loss 1.000 · val 60.0%",
        "supervised/finetune seed 1 · epoch 2/3 · loss 0.500 · val 70.0%",
        "supervised/finetune seed 1 · epoch 3/3 · loss 0.333 · val 80.0%",
    ]

    body = {"artifacts": {"flow_run_id": {"any_": [ours]}, "type": {"any_": ["progress"]}}}
    progress = httpx.post(f"{api}/artifacts/filter", json=body, auth=auth, timeout=10).json()
    assert len(progress) == 1  # one per stage, updated in place
    assert progress[0]["data"] == 100.0 and progress[0]["task_run_id"]
    card = progress[0]["description"]  # ends with where the stage's time went
    assert card.startswith("supervised/finetune seed 1: 3 epoch(s) trained; ")
    assert re.search(r"s held \(train \d+% · load \d+% · upload \d+% · log \d+% ·", card)

    own = flow_run_artifacts(ours, api, auth)  # as the UI lists them: flow run's own, id desc
    assert [(a["type"], a["key"]) for a in own] == [
        ("markdown", "gate-verdict-stage-reporting-test"),
        ("table", "accuracy-table-stage-reporting-test"),
    ]
    assert own[0]["data"].endswith("not promoted") and '"80.0"' in own[1]["data"]

    mlflow_metrics = MlflowClient().get_run(out["stage_run_id"]).data.metrics
    assert mlflow_metrics["val_acc"] == pytest.approx(0.8)
    history = MlflowClient().get_metric_history(out["stage_run_id"], "val_acc")
    assert [(m.step, round(m.value, 3)) for m in history] == [(1, 0.6), (2, 0.7), (3, 0.8)]
    # the time split: the phases add up to the seconds the stage held its slot
    phases = [mlflow_metrics[f"time_{p}_s"] for p in ("load", "train", "upload", "log", "other")]
    assert sum(phases) == pytest.approx(mlflow_metrics["time_held_s"], abs=1e-6)
    assert mlflow_metrics["time_log_s"] > 0 and mlflow_metrics["time_wait_s"] >= 0
