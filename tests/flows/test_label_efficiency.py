"""The label-efficiency flow on a tiny configuration against the real services."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from tests.flows import configs
from warmstart.params import SweepParams

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture(scope="module")
def swept(stack, tmp_path_factory):
    """The sweep in a bucket and WARMSTART_HOME of its own: the pipeline caches finished stages by
    their inputs, and other files' runs on this worker's stack (the same digits pretrained for 2
    epochs, in whatever order the files ran) would otherwise be reused here."""
    from warmstart import storage
    from warmstart.flows.label_efficiency import label_efficiency

    params = SweepParams(
        **{**configs.TINY, "k_shot": 1, "seeds": 2, "pretrain_epochs": 2, "finetune_epochs": 3},
        k_values=[1, 5],
    )
    bucket = f"warmstart-sweep-{uuid.uuid4().hex[:6]}"
    storage.ensure_bucket(bucket)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WARMSTART_BUCKET", bucket)
        mp.setenv("WARMSTART_HOME", str(tmp_path_factory.mktemp("sweep-home")))
        return label_efficiency(params)


def test_every_arm_at_every_k(swept):
    rows = swept["rows"]
    arms = {
        "supervised/linear_probe",
        "scratch",
        "control/random-init-frozen",
        "control/pixel-logreg",
    }
    assert {(r["arm"], r["k"]) for r in rows} == {(a, k) for a in arms for k in (1, 5)}
    for r in rows:
        assert 0.0 <= r["ci_low"] <= r["test_acc"] <= r["ci_high"] <= 1.0
    assert "| arm | k=1 | k=5 |" in swept["markdown"]


def test_pretraining_is_trained_once_for_all_k(swept, stack):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = c.get_experiment_by_name("warmstart/uci-digits-5-9")
    runs = c.search_runs([exp.experiment_id], max_results=500)
    parent = next(r for r in runs if r.data.tags.get("warmstart.kind") == "label_efficiency")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    pretrain = [r for r in children if r.info.run_name == "pretrain-source[supervised]"]
    assert len(pretrain) == 1  # one pretraining for both k values
    finetunes = [r for r in children if r.info.run_name.startswith("finetune-target[")]
    assert len(finetunes) == 2 * 2  # 2 k × 2 seeds, one mode, one strategy
    # 4 finetune + 4 scratch + 4 control trained; the one pretraining may come from the S3 cache
    # when an earlier test in the session pretrained the same source with the same config
    assert swept["trained"] + swept["reused"] == 13 and swept["trained"] >= 12
    files = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"label_efficiency.md", "label_efficiency.json", "label_efficiency.png"} <= files
    steps = {m.step for m in c.get_metric_history(parent.info.run_id, "test_acc.scratch")}
    assert steps == {1, 5}


def test_prefect_artifacts(swept, stack):
    api = stack.env["PREFECT_API_URL"]
    arts = httpx.post(f"{api}/artifacts/filter", json={}, auth=stack.prefect_auth).json()
    keys = {a["key"] for a in arts}
    # keyed per target, so two targets' sweeps never share a key
    assert {"label-efficiency-uci-digits-5-9", "label-efficiency-table-uci-digits-5-9"} <= keys
