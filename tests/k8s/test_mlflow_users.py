"""The flow runs' MLflow user, for real: infra/k8s/mlflow.yaml's flows-user init script run on
SQLite databases, then MLflow's basic-auth server on them. The user is not an admin, does what a
pipeline does (experiment, run, metrics, registered model, alias), is refused what only the admin
may do, and gets EDIT on warmstart's experiments that another user made before it started."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_ports
from tests.k8s.helpers import pod_specs

pytestmark = pytest.mark.slow

ADMIN = ("admin-user", "admin-password-0001")
FLOWS = ("flows-user", "flows-password-0001")


def _init(name: str) -> str:
    (spec,) = [s for w, s in pod_specs() if w == "mlflow"]
    (init,) = [c for c in spec["initContainers"] if c["name"] == name]
    assert init["command"] == ["python", "-c"]
    return init["args"][0]


def _env(tmp: Path, flows: tuple[str, str] = FLOWS) -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_AUTH_DATABASE_URI": f"sqlite:///{tmp / 'auth.db'}",
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "MLFLOW_AUTH_CONFIG_PATH": str(tmp / "basic_auth.ini"),
        "ADMIN_USERNAME": ADMIN[0],
        "FLOWS_USERNAME": flows[0],
        "FLOWS_PASSWORD": flows[1],
    }


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """MLflow's basic-auth server on the databases the init scripts prepared (as in the pod)."""
    tmp = tmp_path_factory.mktemp("mlflow-users")
    env = _env(tmp)
    for name in ("auth-config", "flows-user"):
        out = _run(_init(name), env)
        assert out.returncode == 0, out.stderr[-2000:]
    (port,) = free_ports(1)
    env.update(
        MLFLOW_AUTH_ADMIN_USERNAME=ADMIN[0],
        MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN[1],
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_FLASK_SERVER_SECRET_KEY="flask-test-key-0001",
    )
    cmd = [
        str(Path(sys.executable).with_name("mlflow")), "server", "--app-name", "basic-auth",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", env["MLFLOW_BACKEND_STORE_URI"],
        "--artifacts-destination", str(tmp / "artifacts"),
    ]  # fmt: skip
    log = open(tmp / "mlflow.log", "w")  # closed in the finally below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow did not start: {(tmp / 'mlflow.log').read_text()[-1500:]}")
            time.sleep(0.5)
        yield url, tmp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _api(url: str, auth: tuple[str, str], method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, f"{url}/api/2.0/mlflow/{path}", auth=auth, timeout=30, **kw)


def test_the_flows_user_is_not_an_admin_and_runs_a_pipelines_calls(server):
    url, _ = server
    me = _api(url, FLOWS, "GET", "users/get", params={"username": FLOWS[0]})
    assert me.status_code == 200 and me.json()["user"]["is_admin"] is False
    exp = _api(url, FLOWS, "POST", "experiments/create", json={"name": "warmstart/flowers"})
    assert exp.status_code == 200, exp.text
    exp_id = exp.json()["experiment_id"]
    run = _api(url, FLOWS, "POST", "runs/create", json={"experiment_id": exp_id})
    run_id = run.json()["run"]["info"]["run_id"]
    metric = {"run_id": run_id, "key": "acc", "value": 0.5, "timestamp": 0, "step": 0}
    assert _api(url, FLOWS, "POST", "runs/log-metric", json=metric).status_code == 200
    model = {"name": "warmstart-flowers"}
    assert _api(url, FLOWS, "POST", "registered-models/create", json=model).status_code == 200
    version = _api(
        url,
        FLOWS,
        "POST",
        "model-versions/create",
        json={"name": "warmstart-flowers", "source": f"runs:/{run_id}/model", "run_id": run_id},
    )
    assert version.status_code == 200, version.text
    alias = {"name": "warmstart-flowers", "alias": "champion", "version": "1"}
    assert _api(url, FLOWS, "POST", "registered-models/alias", json=alias).status_code == 200
    done = {"run_id": run_id, "status": "FINISHED"}
    assert _api(url, FLOWS, "POST", "runs/update", json=done).status_code == 200


def test_the_flows_user_is_refused_what_only_the_admin_may_do(server):
    url, _ = server
    intruder = {"username": "intruder", "password": "intruder-password-1"}
    assert _api(url, FLOWS, "POST", "users/create", json=intruder).status_code == 403
    promote = {"username": FLOWS[0], "is_admin": True}
    assert _api(url, FLOWS, "PATCH", "users/update-admin", json=promote).status_code == 403
    # an experiment outside warmstart's, made by the admin: invisible to the flow runs
    other = _api(url, ADMIN, "POST", "experiments/create", json={"name": "finance/secret"})
    exp_id = other.json()["experiment_id"]
    got = _api(url, FLOWS, "GET", "experiments/get", params={"experiment_id": exp_id})
    assert got.status_code == 403
    wrong = (FLOWS[0], "not-the-password-1")
    assert (
        _api(url, wrong, "GET", "experiments/get", params={"experiment_id": "0"}).status_code == 401
    )


def test_warmstart_experiments_another_user_made_become_editable_on_the_next_start(server):
    url, tmp = server
    made = _api(url, ADMIN, "POST", "experiments/create", json={"name": "warmstart/by-admin"})
    exp_id = made.json()["experiment_id"]
    run = {"experiment_id": exp_id}
    assert _api(url, FLOWS, "POST", "runs/create", json=run).status_code == 403
    out = _run(_init("flows-user"), _env(tmp))  # what the pod's next start runs
    assert out.returncode == 0, out.stderr[-2000:]
    assert "is ready (not an admin)" in out.stdout
    assert _api(url, FLOWS, "POST", "runs/create", json=run).status_code == 200


def test_the_init_refuses_the_admin_as_the_flows_user(tmp_path):
    out = _run(_init("flows-user"), _env(tmp_path, flows=(ADMIN[0], "whatever-password-1")))
    assert out.returncode == 1
    assert "warmstart-mlflow-flows" in out.stderr
