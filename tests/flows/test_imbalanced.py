"""The imbalanced-target scenario through the real pipeline (issue 26), at tiny sizes: UCI digits
with classes 7, 8 and 9 cut to 30 images each (every split holds about a sixth as many of them),
MNIST digits as the source. ``--metric auto`` must pick balanced accuracy; the verdict, the table,
the verdict JSON and the recorded predictions must all say so and agree number for number."""

from __future__ import annotations

import json
import os

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.flows import configs
from warmstart.params import PipelineParams

pytestmark = [pytest.mark.services, pytest.mark.slow]

IMBALANCED = dict(
    source="builtin:mnist-5k?crop=content",
    k_shot=3,
    strategies=["supervised"],
    transfer_modes=["linear_probe"],
    seeds=1,
    pretrain_epochs=2,
    finetune_epochs=3,
    confirm_seeds=2,  # the gate reads the metric on confirmation seeds only
    metric="auto",
)


@pytest.fixture(scope="module")
def imbalanced_run(stack, tmp_path_factory):
    from warmstart.flows.pipeline import transfer_pipeline  # deferred: heavy (prefect, torch)

    target = configs.imbalanced_digits(tmp_path_factory.mktemp("imbalanced-digits"))
    summary = transfer_pipeline(PipelineParams(**IMBALANCED, target=target))
    return summary


def _artifacts(summary: dict, folder) -> tuple[dict, pd.DataFrame]:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    run_id = summary["mlflow_run_url"].split("/runs/")[1].split("?")[0]
    report = json.loads(open(c.download_artifacts(run_id, "gate_report.json", str(folder))).read())
    path = c.download_artifacts(run_id, "predictions.parquet", str(folder))
    return report, pd.read_parquet(path)


def test_auto_gates_an_imbalanced_target_on_balanced_accuracy(imbalanced_run, stack, tmp_path):
    from warmstart.promotion import classes, recompute_verdict
    from warmstart.promotion.metric import IMBALANCE_RATIO, imbalance

    summary = imbalanced_run
    report, frame = _artifacts(summary, tmp_path)
    gate = frame[(frame["gate"] != "") & (frame["phase"] == "confirmation")]
    first = gate[(gate["gate"] == "scratch") & (gate["seed"] == gate["seed"].min())]
    counts = np.bincount(first["label"], minlength=10)
    assert counts[7:].max() * 4 < counts[:7].min()  # the cut classes are rare in the test split
    assert imbalance(first["label"], 10) > IMBALANCE_RATIO

    # auto picked balanced accuracy, and every place the verdict goes says so
    assert summary["metric"] == "balanced_accuracy"
    delta = report["decision"]["delta_vs_scratch"]
    assert delta["metric"] == "balanced_accuracy"
    assert set(gate["metric"]) == {"balanced_accuracy"}
    assert "2 confirmation seeds, balanced accuracy" in summary["reason"]
    # the recorded predictions give back the gate's balanced interval, and differ under accuracy
    got = recompute_verdict(frame)
    assert {k: got[k] for k in delta} == pytest.approx(delta)
    plain = recompute_verdict(frame, metric="accuracy")
    assert plain["mean_diff"] != pytest.approx(delta["mean_diff"], abs=1e-9)
    by_role = {
        role: part.groupby("seed")["pred"].apply(list).tolist()
        for role, part in gate.groupby("gate")
    }
    y = first["label"].tolist()
    cand_balanced = np.nanmean(classes.class_accuracy(y, by_role["candidate"], 10))
    assert delta["candidate_accuracy"] == pytest.approx(cand_balanced)

    # the table: balanced accuracy beside accuracy, the confirm rows' from the same predictions
    rows = {r["arm"]: r for r in summary["table"]}
    confirm = rows[f"{summary['candidate']} (confirm)"]
    assert confirm["balanced_acc"] == pytest.approx(cand_balanced)
    assert rows["scratch (confirm)"]["balanced_acc"] == pytest.approx(delta["baseline_accuracy"])
    assert all(r["balanced_acc"] is not None for r in summary["table"])

    # a class below scratch by more than the margin is named, from the same predictions
    drops = classes.class_drops(
        y, by_role["candidate"], by_role["scratch"], [str(c) for c in range(10)]
    )
    assert summary["class_drops"] == drops
    assert report["decision"]["class_drops"] == summary["class_drops"]
    for row in drops:
        assert f"class {row['class']}: " in summary["reason"]
    assert ("Below scratch by more than 10 points" in summary["reason"]) == bool(drops)

    # the Prefect table artifact has the column
    api = stack.env["PREFECT_API_URL"]
    arts = httpx.post(f"{api}/artifacts/filter", json={}, auth=stack.prefect_auth).json()
    (table,) = [
        a
        for a in arts
        if a["flow_run_id"] == summary["flow_run_id"]
        and (a["key"] or "").startswith("accuracy-table")
    ]
    data = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    assert data[0]["balanced acc"] == f"{100 * rows[data[0]['arm']]['balanced_acc']:.1f}%"
