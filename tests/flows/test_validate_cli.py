"""Bad input through the CLI against the real services: refused with one line before anything
starts, so no Prefect flow run and no MLflow run is left behind."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.services, pytest.mark.slow]

WARMSTART = [sys.executable, "-m", "warmstart.cli"]


def flow_run_count(stack) -> int:
    api = stack.env["PREFECT_API_URL"]
    out = httpx.post(f"{api}/flow_runs/count", json={}, auth=stack.prefect_auth)
    out.raise_for_status()
    return int(out.json())


def mlflow_run_count() -> int:
    client = MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments()]
    return len(client.search_runs(ids, max_results=1000)) if ids else 0


def refused(*args: str) -> str:
    out = subprocess.run(
        [*WARMSTART, "run", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    assert "Traceback" not in out.stderr
    return out.stderr.strip().splitlines()[-1]


def test_bad_input_leaves_no_flow_run_and_no_mlflow_run(stack):
    before = (flow_run_count(stack), mlflow_run_count())
    line = refused("--k-shot", "5000", "--seeds", "1")
    assert "--k-shot 5000" in line and "use --k-shot 113 or less" in line
    line = refused("--modes", "freeze=layer9")
    assert "freeze=layer9" in line and "finetune" in line
    line = refused("--target", "builtin:uci-digits?size=4x4")  # below every backbone's minimum
    assert "--target" in line and "8..1024" in line
    assert (flow_run_count(stack), mlflow_run_count()) == before
