"""`python -m warmstart.infra.cluster`: the Secrets it renders fit the manifests (every reference
resolves, the S3 identities match the key pairs, the certificate is the CA's), and the pool
template it renders pins the image and unlocks only what an operator names."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from urllib.parse import urlsplit

import kubernetes_validate
import pytest

from tests.k8s import rules
from tests.k8s.helpers import K8S_VERSION, ROOT, objects_of
from warmstart.infra import cluster
from warmstart.infra.errors import StackError


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, str]]:
    return {s["metadata"]["name"]: s["stringData"] for s in cluster.render_secrets()}


def test_renders_exactly_the_template_secrets_schema_valid():
    template = {n: set(s["stringData"]) for n, s in objects_of("Secret").items()}
    secrets = cluster.render_secrets()
    assert {s["metadata"]["name"]: set(s["stringData"]) for s in secrets} == template
    for secret in secrets:
        assert secret["metadata"]["namespace"] == "warmstart"
        assert kubernetes_validate.validate(secret, K8S_VERSION, strict=True) == K8S_VERSION
        assert not any("CHANGE_ME" in v for v in secret["stringData"].values())


def test_every_secret_reference_of_what_runs_resolves(rendered):
    refs = 0
    for _, _, spec in rules.pods(rules.cluster()):
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in rendered
                refs += 1
        for c in rules.containers(spec):
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in rendered
                    refs += 1
            for item in c.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in rendered[ref["name"]], ref
                    refs += 1
    assert refs >= 20  # not vacuous (23 today)


def test_values_are_fresh_and_consistent(rendered):
    again = {s["metadata"]["name"]: s["stringData"] for s in cluster.render_secrets()}
    assert (
        rendered["warmstart-postgres"]["POSTGRES_PASSWORD"]
        != (again["warmstart-postgres"]["POSTGRES_PASSWORD"])
    )
    pg = rendered["warmstart-postgres"]
    for key in ("PREFECT_API_DATABASE_CONNECTION_URL", "MLFLOW_BACKEND_STORE_URI"):
        assert urlsplit(pg[key]).password == pg["POSTGRES_PASSWORD"]
    admin, flows = rendered["warmstart-mlflow-auth"], rendered["warmstart-mlflow-flows"]
    assert admin["MLFLOW_TRACKING_USERNAME"] != flows["MLFLOW_TRACKING_USERNAME"]
    for user in (admin, flows):
        assert len(user["MLFLOW_TRACKING_PASSWORD"]) >= 12  # MLflow's minimum
    assert ":" not in rendered["warmstart-prefect-auth"]["PREFECT_API_AUTH_STRING"].split(":", 1)[1]
    pairs = [rendered[f"warmstart-s3{s}"]["AWS_ACCESS_KEY_ID"] for s in ("", "-mlflow", "-flows")]
    assert len(set(pairs)) == 3


def test_s3_json_holds_the_three_key_pairs_with_scoped_actions(rendered):
    identities = json.loads(rendered["warmstart-seaweedfs-s3"]["s3.json"])["identities"]
    by_name = {i["name"]: i for i in identities}
    for name, secret in (("admin", ""), ("mlflow", "-mlflow"), ("flows", "-flows")):
        pair = rendered[f"warmstart-s3{secret}"]
        (cred,) = by_name[name]["credentials"]
        assert (cred["accessKey"], cred["secretKey"]) == (
            pair["AWS_ACCESS_KEY_ID"],
            pair["AWS_SECRET_ACCESS_KEY"],
        )
    assert "Admin" in by_name["admin"]["actions"]
    assert by_name["mlflow"]["actions"] == [
        f"{a}:warmstart/mlflow/*" for a in ("Read", "Write", "List", "Tagging")
    ]
    flows = by_name["flows"]["actions"]
    assert all(":warmstart/" in a and a.endswith("/*") for a in flows)
    assert not [a for a in flows if "/mlflow/" in a or a.startswith("Admin")]
    assert [a for a in flows if "/weights/" in a] == [
        "Read:warmstart/weights/*",
        "List:warmstart/weights/*",
    ]
    assert "Write:warmstart/datasets/*" in flows and "Write:warmstart/checkpoints/*" in flows


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_node_certificate_is_signed_by_the_ca_for_loopback(rendered, tmp_path):
    tls = rendered["warmstart-seaweedfs-tls"]
    for name, text in tls.items():
        (tmp_path / name).write_text(text)
    ok = subprocess.run(
        ["openssl", "verify", "-CAfile", "ca.crt", "tls.crt"], cwd=tmp_path, capture_output=True
    )
    assert ok.returncode == 0, ok.stderr
    text = subprocess.run(
        ["openssl", "x509", "-in", "tls.crt", "-noout", "-text"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    ).stdout
    assert "IP Address:127.0.0.1" in text and "TLS Web Client Authentication" in text
    assert "PRIVATE KEY" in tls["tls.key"] and "PRIVATE KEY" not in tls["ca.crt"]


def test_the_secrets_file_is_private_and_never_overwritten(tmp_path):
    out = tmp_path / "secrets.json"
    cli = [sys.executable, "-m", "warmstart.infra.cluster", "secrets", "--out", str(out)]
    first = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    doc = json.loads(out.read_text())
    assert doc["kind"] == "List" and len(doc["items"]) == len(objects_of("Secret"))
    password = doc["items"][5]["stringData"]["POSTGRES_PASSWORD"]
    assert password not in first.stdout + first.stderr  # says where, never what
    again = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert again.returncode == 2
    assert again.stderr.strip().startswith(f"error: {out} exists")
    assert json.loads(out.read_text()) == doc


def test_pool_template_pins_the_image_and_names_a_wrong_unlock():
    template = cluster.pool_template("registry.example.com/warmstart:3")
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert container["containers"][0]["image"] == "registry.example.com/warmstart:3"
    with pytest.raises(StackError, match="--allow cpu_limit: not a locked variable"):
        cluster.pool_template("registry.example.com/warmstart:3", ["cpu_limit"])
    for bad in ("", "a b", "--evil"):
        with pytest.raises(StackError, match="not an image reference"):
            cluster.pool_template(bad)
    # the committed template is the pinned one but for the placeholder image
    committed = json.loads(cluster.TEMPLATE.read_text())
    placeholder = cluster.pool_template("warmstart:latest")
    assert placeholder == committed
