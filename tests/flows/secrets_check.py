"""The secret scan the pipeline tests run after a real flow run: no credential of the stack in an
MLflow run's params or tags, a registered version's tags, or anything the Prefect server keeps
(logs, artifacts, flow runs)."""

from __future__ import annotations

import json

import httpx
from mlflow.tracking import MlflowClient


def assert_no_secret(stack, experiment: str, model_name: str) -> None:
    """Scan experiment ``warmstart/<experiment>``'s runs, ``model_name``'s versions and every
    log, artifact and flow run on the stack's Prefect server."""
    secrets = [stack.env["AWS_SECRET_ACCESS_KEY"], stack.env["AWS_ACCESS_KEY_ID"]]
    secrets += [stack.env["MLFLOW_TRACKING_PASSWORD"], stack.prefect_auth[1]]
    c = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    exp = c.get_experiment_by_name(f"warmstart/{experiment}")
    runs = c.search_runs([exp.experiment_id], max_results=500)
    assert runs
    for run in runs:
        blob = json.dumps({"p": run.data.params, "t": run.data.tags})
        assert not any(s in blob for s in secrets), run.info.run_name
    versions = c.search_model_versions(f"name = '{model_name}'")
    assert versions
    for mv in versions:
        assert not any(s in json.dumps(mv.tags) for s in secrets)
    api, auth = stack.env["PREFECT_API_URL"], stack.prefect_auth
    logs = httpx.post(f"{api}/logs/filter", json={"limit": 200}, auth=auth).json()
    offset = 200
    while True:
        page = httpx.post(
            f"{api}/logs/filter", json={"limit": 200, "offset": offset}, auth=auth
        ).json()
        if not page:
            break
        logs += page
        offset += 200
    text = json.dumps(logs)
    assert logs and not any(s in text for s in secrets)
    arts = json.dumps(httpx.post(f"{api}/artifacts/filter", json={}, auth=auth).json())
    assert "gate-verdict" in arts and not any(s in arts for s in secrets)
    runs = json.dumps(httpx.post(f"{api}/flow_runs/filter", json={}, auth=auth).json())
    assert not any(s in runs for s in secrets)
