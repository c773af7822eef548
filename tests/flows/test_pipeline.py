"""The transfer pipeline end to end against the real SeaweedFS, MLflow server and Prefect server,
on a tiny configuration (split-class UCI digits, 8×8, a few epochs), and the same run on a local
Dask cluster. The run that promotes, and its cached rerun, are in test_pipeline_promoted.py: two
files, so parallel test workers share the load."""

from __future__ import annotations

import os
import time
import uuid

import httpx
import pytest

from tests.flows import configs
from tests.flows.secrets_check import assert_no_secret
from warmstart.errors import ConfigError
from warmstart.flows import dask_runner

pytestmark = [pytest.mark.services, pytest.mark.slow]

TINY = configs.TINY


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


@pytest.fixture(scope="module")
def first_run(tiny_run):
    """The session's TINY run (tests/flows/conftest.py; the Dask test below compares with it)."""
    return tiny_run


def test_end_to_end_summary(first_run):
    summary = first_run["summary"]
    arms = {row["arm"] for row in summary["table"]}
    assert {
        "supervised/linear_probe",
        "scratch",
        "control/random-init-frozen",
        "control/pixel-logreg",
    } <= arms
    for row in summary["table"]:
        assert 0.0 <= row["test_acc"] <= 1.0
        assert row["test_ci"][0] <= row["test_acc"] <= row["test_ci"][1]
    assert summary["trained"] > 0 and summary["reused"] == 0
    # TINY has confirm_seeds=0: nothing is confirmed, so the gate cannot promote
    assert (summary["verdict"], summary["passed"]) == ("not promoted", False)
    assert summary["rule"] == "unconfirmed" and summary["protocol"]["confirmation_seeds"] == []


def test_mlflow_parent_and_nested_runs_with_artifacts(first_run):
    c = _client()
    exp = c.get_experiment_by_name("warmstart/uci-digits-5-9")
    assert exp is not None
    runs = c.search_runs([exp.experiment_id], max_results=200)
    parents = [r for r in runs if r.data.tags.get("warmstart.kind") == "pipeline"]
    assert parents
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    names = {r.info.run_name for r in children}
    assert "pretrain-source[supervised]" in names
    assert "finetune-target[supervised/linear_probe/seed=1]" in names
    assert "train-scratch-baseline[scratch/seed=0]" in names
    # per-epoch metrics on a training stage (scratch trains every epoch; a linear probe is one fit)
    scratch = next(
        r for r in children if r.info.run_name == "train-scratch-baseline[scratch/seed=0]"
    )
    history = c.get_metric_history(scratch.info.run_id, "val_acc")
    assert sorted(m.step for m in history) == list(range(1, TINY["finetune_epochs"] + 1))
    # parent artifacts
    files = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {
        "predictions.parquet",
        "gate_report.md",
        "gate_report.json",
        "accuracy_table.md",
    } <= files
    # params are the resolved configuration
    assert parent.data.params["k_shot"] == "5"
    assert parent.data.params["source"] == TINY["source"]
    # dataset inputs with digests
    inputs = c.get_run(parent.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 2 and all(len(i.dataset.digest) >= 8 for i in inputs)
    _check_ui_views(c, exp, parent, children)


def _check_ui_views(c, exp, parent, children) -> None:
    """The UI opens the training view; every arm's run carries the same metric names (Compare,
    charts); the parent keeps a summary and one test accuracy per arm, not every per-arm name."""
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    arms = [r for r in children if not r.info.run_name.startswith("pretrain-source")]
    assert len(arms) >= 3
    for run in arms:
        for name in ("test_accuracy", "val_accuracy"):
            assert 0.0 <= run.data.metrics[name] <= 1.0, (run.info.run_name, name)
    metrics = parent.data.metrics
    assert 0.0 <= metrics["test_acc.supervised.linear_probe"] <= 1.0
    assert metrics["gate_delta_ci_low"] <= metrics["gate_delta_vs_scratch"]
    assert metrics["gate_delta_vs_scratch"] <= metrics["gate_delta_ci_high"]
    assert not [m for m in metrics if m.startswith(("val_acc.", "delta_vs_scratch."))]
    pretrain = next(r for r in children if r.info.run_name == "pretrain-source[supervised]")
    files = {a.path for a in c.list_artifacts(pretrain.info.run_id)}
    assert "learning_curves.png" in files and "loss_curve.png" not in files


def test_registered_version_carries_the_verdict_and_its_training_run(first_run):
    """keep_candidates registers the served model whatever the verdict; the version's source
    run is the stage run that trained it (lineage), and a refused one is tagged candidate."""
    summary = first_run["summary"]
    c = _client()
    mv = c.get_model_version(summary["model_name"], summary["version"])
    trained_by = c.get_run(mv.run_id)
    assert trained_by.data.tags["warmstart.stage"] == "finetune-target"
    assert trained_by.info.run_name.startswith("finetune-target[supervised/linear_probe/seed=")
    assert mv.tags["candidate"] == ("false" if summary["passed"] else "true")
    for tag in (
        "strategy",
        "transfer_mode",
        "source_dataset_hash",
        "checkpoint_uri",
        "gate_verdict",
        "gate_reason",
    ):
        assert tag in mv.tags, tag
    assert mv.tags["gate_verdict"] == summary["verdict"]
    assert mv.tags["checkpoint_uri"].startswith("s3://")
    # the registry page states the verdict and the source
    assert mv.description.startswith(f"**{summary['verdict']}**")
    assert mv.run_id in mv.description and TINY["source"] in mv.description


def test_version_card_and_verdict_event(first_run, stack):
    """The registered version's description ends with its generated model card (also an
    artifact of its training run and a Prefect artifact), and the verdict reached the Prefect
    server as an event about that version."""
    summary, c = first_run["summary"], _client()
    mv = c.get_model_version(summary["model_name"], summary["version"])
    head, card = mv.description.split("\n\n# Model card: ", 1)
    card = "# Model card: " + card
    print(card)  # the closing note quotes a real one
    assert head.startswith(f"**{summary['verdict']}**")  # the registry's own lines come first
    assert card.startswith(f"# Model card: `{summary['model_name']}` version {mv.version}")
    for section in (
        "## Task",
        "## Source and lineage",
        "## Data",
        "## Verdict",
        "## Leakage",
        "## Per class (test split)",
        "## Compute",
        "## Intended use and known limits",
    ):
        assert f"\n{section}\n" in card, section
    assert "`5`, `6`, `7`, `8`, `9`" in card and summary["verdict"] in card
    kept = c.download_artifacts(mv.run_id, f"model_card/v{mv.version}.md")
    assert open(kept).read() == card
    api = stack.env["PREFECT_API_URL"]
    arts = httpx.post(f"{api}/artifacts/filter", json={}, auth=stack.prefect_auth).json()
    ours = [a for a in arts if a["flow_run_id"] == summary["flow_run_id"]]
    assert any(a["key"] == "model-card-uci-digits-5-9" and a["data"] == card for a in ours)

    name = "warmstart.model.promoted" if summary["passed"] else "warmstart.model.refused"
    assert summary["event"] == name
    rid = f"warmstart.model.{summary['model_name']}.{summary['version']}"
    body = {"filter": {"event": {"name": [name]}, "resource": {"id": [rid]}}, "limit": 5}
    for _ in range(30):  # the events worker sends in the background
        events = httpx.post(f"{api}/events/filter", json=body, auth=stack.prefect_auth).json()
        if events.get("events"):
            break
        time.sleep(1)
    (event,) = events["events"]
    assert event["payload"]["verdict"] == summary["verdict"]
    assert event["payload"]["model_uri"] == summary["model_uri"]
    assert event["payload"]["ci_low"] <= event["payload"]["delta"] <= event["payload"]["ci_high"]
    assert event["payload"]["flow_run_id"] == summary["flow_run_id"]


def test_no_secret_anywhere(first_run, stack):
    assert_no_secret(stack, "uci-digits-5-9", first_run["summary"]["model_name"])


def test_prefect_artifacts_and_task_names(first_run, stack):
    api = stack.env["PREFECT_API_URL"]
    arts = httpx.post(f"{api}/artifacts/filter", json={}, auth=stack.prefect_auth).json()
    kinds = {a["type"] for a in arts}
    assert {"markdown", "table", "progress"} <= kinds
    ours = first_run["summary"]["flow_run_id"]
    ours_arts = [a for a in arts if a["flow_run_id"] == ours]
    verdict = next(a for a in ours_arts if a["key"] == "gate-verdict-uci-digits-5-9")
    assert first_run["summary"]["verdict"] in verdict["data"]
    tr = httpx.post(f"{api}/task_runs/filter", json={}, auth=stack.prefect_auth).json()
    names = {t["name"] for t in tr}
    assert "pretrain-source[supervised]" in names
    assert "finetune-target[supervised/linear_probe/seed=0]" in names
    # this run's training tasks hold the gpu slot (other files' runs on this server may have
    # other gpu tasks, e.g. batch prediction's run-model)
    gpu_tasks = [t for t in tr if "gpu" in t["tags"] and t["flow_run_id"] == ours]
    assert gpu_tasks and all(
        t["name"].startswith(("pretrain-source", "finetune-target", "train-")) for t in gpu_tasks
    )
    others = [t["name"] for t in tr if t["flow_run_id"] == ours and "gpu" not in t["tags"]]
    assert {name.rsplit("-", 1)[0] for name in others} >= {  # Prefect adds "-<3 chars>"
        "make-splits",
        "check-leakage",
        "evaluate",
        "register-and-promote",
    }


# The pipeline's training fan-out on a local 2-worker Dask cluster (prefect-dask) gives the same
# numbers as the default thread-pool runner (the TINY run above). The Dask run trains from
# nothing: it gets its own bucket (the pipeline caches finished stages in S3 by their inputs) and
# its own WARMSTART_HOME (the local checkpoint mirror would otherwise let it resume at the last
# epoch). Its registration is off, so the TINY run's model cannot be its champion; the numbers
# (accuracies, deltas) do not depend on registration.


def _fresh_store(monkeypatch, tmp_path, tag: str) -> str:
    from warmstart import storage

    bucket = f"warmstart-{tag}-{uuid.uuid4().hex[:6]}"
    storage.ensure_bucket(bucket)
    monkeypatch.setenv("WARMSTART_BUCKET", bucket)
    monkeypatch.setenv("WARMSTART_HOME", str(tmp_path / tag))
    return bucket


def _numbers(summary: dict) -> dict:
    return {
        row["arm"]: (row["test_acc"], row["val_acc"], row["delta_vs_scratch"])
        for row in summary["table"]
    }


def test_dask_cluster_checks_worker_env_and_matches_the_default_runner(
    stack, tiny_run, monkeypatch, tmp_path
):
    from distributed import LocalCluster

    from warmstart.params import PipelineParams

    params = PipelineParams(**TINY, register_model=False)
    threads, t_threads = tiny_run["summary"], tiny_run["seconds"]

    bucket = _fresh_store(monkeypatch, tmp_path, "dask")
    t0 = time.monotonic()
    on_dask = dask_runner.run_on_dask(params, n_workers=2)
    t_dask = time.monotonic() - t0
    print(f"default runner {t_threads:.1f} s, local Dask (2 workers × 1 thread) {t_dask:.1f} s")

    assert on_dask["trained"] > 0 and on_dask["reused"] == 0 and on_dask["resumed"] == 0
    # the Dask run really wrote its stages into its own bucket
    from warmstart import storage

    assert any(
        k.endswith("result.json")
        for k in storage.list_keys(storage.uri("checkpoints/", bucket=bucket))
    )
    assert _numbers(on_dask) == _numbers(threads)
    assert on_dask["verdict"] == threads["verdict"]

    # an existing cluster whose workers see another bucket is refused before any work
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        assert dask_runner.check_worker_env(cluster.scheduler_address) == 1
        monkeypatch.setenv("WARMSTART_BUCKET", "somewhere-else")  # the workers keep theirs
        with pytest.raises(ConfigError, match="WARMSTART_BUCKET"):
            dask_runner.run_on_dask(params, address=cluster.scheduler_address)
