"""The transfer pipeline promotes a real gain, against the real SeaweedFS, MLflow server and
Prefect server: MNIST digits → UCI digits at k=1 (configs.PROMOTING), the champion served by
plain MLflow, the verdict recomputable from the recorded predictions, and the same run again
as a cache hit. (The TINY run's tests are in test_pipeline.py: two files, so parallel test
workers share the load.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.flows import configs
from tests.flows.secrets_check import assert_no_secret
from warmstart.params import PipelineParams

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


@pytest.fixture(scope="module")
def promoted_run(stack):
    """MNIST digits → UCI digits at k=1: supervised transfer beats scratch by tens of points."""
    from warmstart.flows.pipeline import transfer_pipeline

    params = PipelineParams(**configs.PROMOTING)
    t0 = time.monotonic()
    summary = transfer_pipeline(params)
    return {**summary, "seconds": time.monotonic() - t0}


def _check_recomputable(c, summary: dict, folder) -> None:
    """The downloaded predictions.parquet holds every seed of both phases, and the one documented
    call gives back the interval the gate reported (gate_report.json), number for number."""
    import pandas as pd

    from warmstart.promotion import recompute_verdict

    run_id = summary["mlflow_run_url"].split("/runs/")[1].split("?")[0]
    path = c.download_artifacts(run_id, "predictions.parquet", str(folder))
    report = json.loads(open(c.download_artifacts(run_id, "gate_report.json", str(folder))).read())
    reported = report["decision"]["delta_vs_scratch"]
    got = recompute_verdict(path)
    assert {k: got[k] for k in reported} == pytest.approx(reported), (got, reported)
    assert got["method"] == "two-way" and got["phase"] == "confirmation"
    frame = pd.read_parquet(path)
    arm = frame[frame["arm"] == "supervised/linear_probe"]
    assert sorted(set(zip(arm["phase"], arm["seed"], strict=True))) == [
        ("confirmation", s) for s in range(1000, 1005)
    ] + [("selection", 0), ("selection", 1)]


def test_gate_promotes_a_real_gain(promoted_run, stack):
    summary = promoted_run
    row = next(r for r in summary["table"] if r["arm"] == "supervised/linear_probe")
    assert row["delta_ci"][0] > 0.0, row
    assert summary["verdict"] == "promoted", summary["reason"]
    # the gate decided on the confirmation seeds only, and says so with the labels it used
    protocol = summary["protocol"]
    assert protocol["confirmation_seeds"] == [1000, 1001, 1002, 1003, 1004]
    assert (protocol["arms_compared"], protocol["scratch_configs"]) == (1, 1)
    assert protocol["labels"]["train"] == 10 and protocol["labels"]["val"] == 269
    assert protocol["labels"]["per_model"] == 10 + 269
    for text in ("confirmation seeds 1000–1004", "1 transfer configuration ", "labels used 279"):
        assert text in summary["reason"], summary["reason"]
    confirmed = next(r for r in summary["table"] if r["arm"] == "supervised/linear_probe (confirm)")
    assert confirmed["seeds"] == 5 and confirmed["delta_ci"][0] > 0.0, confirmed
    assert "two-way interval over seeds and test images, 5 confirmation seeds" in summary["reason"]
    c = _client()
    _check_recomputable(c, summary, stack.home)
    champion = c.get_model_version_by_alias(summary["model_name"], "champion")
    assert champion.version == summary["version"]
    assert champion.tags["gate_verdict"] == "promoted"
    assert summary["event"] == "warmstart.model.promoted"
    assert "# Model card: " in champion.description and "**promoted**" in champion.description
    print(champion.description)  # the closing note quotes a promoted champion's card


def test_champion_loads_with_plain_mlflow_and_reproduces_accuracy(promoted_run, stack):
    summary = promoted_run
    c = _client()
    from warmstart.data import load_dataset, load_splits

    mv = c.get_model_version_by_alias(summary["model_name"], "champion")
    target_hash = mv.tags["target_dataset_hash"]
    ds = load_dataset(target_hash)
    test_idx = load_splits(mv.tags["split_hash"]).test
    np.save(stack.home / "x_test.npy", ds.images[test_idx].astype(np.float32) / 255.0)
    np.save(stack.home / "y_test.npy", ds.labels[test_idx])
    code = (
        "import sys, numpy as np, mlflow\n"
        "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "x = np.load(sys.argv[2]); y = np.load(sys.argv[3])\n"
        # the image pyfunc's tensor path (its signature takes PNG/JPEG bytes)
        "logits = m.unwrap_python_model().logits(x)\n"
        "print(float((np.asarray(logits).argmax(1) == y).mean()))\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            f"models:/{summary['model_name']}@champion",
            str(stack.home / "x_test.npy"),
            str(stack.home / "y_test.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    acc = float(out.stdout.strip().splitlines()[-1])
    assert acc == pytest.approx(summary["served_test_accuracy"], abs=1e-9)
    assert acc == pytest.approx(float(mv.tags["test_accuracy"]), abs=5e-5)  # tag has 4 decimals


def test_rerun_is_a_cache_hit_and_does_not_register_the_same_model_again(promoted_run):
    """Same parameters again: every stage is reused (same splits, same weights, same numbers);
    the cached candidate has the champion's weights, so no new version is registered and the
    champion stays where it is."""
    from warmstart.flows.pipeline import transfer_pipeline

    c = _client()
    first_version = promoted_run["version"]
    before = c.search_model_versions(f"name = '{promoted_run['model_name']}'")
    t0 = time.monotonic()
    summary = transfer_pipeline(PipelineParams(**configs.PROMOTING))
    assert summary["trained"] == 0
    assert summary["reused"] == promoted_run["trained"] + promoted_run["reused"]
    assert time.monotonic() - t0 < promoted_run["seconds"]
    numbers = {r["arm"]: r["test_acc"] for r in promoted_run["table"]}
    assert {r["arm"]: r["test_acc"] for r in summary["table"]} == numbers
    assert summary["version"] == first_version
    model = c.get_registered_model(summary["model_name"])
    assert model.aliases["champion"] == first_version
    after = c.search_model_versions(f"name = '{promoted_run['model_name']}'")
    assert len(after) == len(before)


def test_no_secret_anywhere_after_a_promotion(promoted_run, stack):
    assert_no_secret(stack, "uci-digits", promoted_run["model_name"])
