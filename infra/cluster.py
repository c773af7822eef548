"""What the Kubernetes install (``infra/k8s/``) needs beyond its manifests, rendered offline.

``python -m warmstart.infra.cluster secrets --out FILE``
    Every Secret the manifests name, with fresh values, as one JSON ``List`` for
    ``kubectl apply -f FILE`` (written with mode 0600; an existing file is never overwritten).
    This includes SeaweedFS's gRPC certificates (the local stack's ``make_tls``) and its
    ``s3.json``, whose three identities match the three S3 key pairs.

``python -m warmstart.infra.cluster pool-template --image REF [--allow NAME ...]``
    The work pool's base job template (``deploy/k8s-gpu-job-template.json``) with the warmstart
    image pinned: no deployment or run can change the image, command, environment, labels,
    annotations or service account. ``--allow`` gives a locked variable back, an operator's
    decision (``deploy/k8s-unlockable-variables.json`` holds their definitions).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

from .errors import StackError
from .seaweedfs import make_tls

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "k8s-gpu-job-template.json"
UNLOCKABLE = ROOT / "deploy" / "k8s-unlockable-variables.json"
NAMESPACE = "warmstart"
BUCKET = "warmstart"
# What the flow runs write and read in the bucket (docs/ARCHITECTURE.md, "Storage layout"), and
# `predictions/` for batch prediction's inputs and outputs. The weights mirror is read-only to
# them: `warmstart weights` (an operator, with the admin keys) fills it.
FLOW_PREFIXES = ("datasets", "splits", "checkpoints", "sources", "predictions")
FLOW_READ_ONLY = ("weights",)
MLFLOW_PREFIX = "mlflow"
MLFLOW_ADMIN, MLFLOW_FLOWS = "warmstart-admin", "warmstart-flows"


def _token(n: int = 24) -> str:
    return secrets.token_hex(n)  # URL-, shell- and TOML-safe, no ":"


def _on(actions: tuple[str, ...], bucket: str, prefix: str) -> list[str]:
    return [f"{a}:{bucket}/{prefix}/*" for a in actions]


def s3_identities(keys: dict[str, tuple[str, str]], bucket: str = BUCKET) -> dict[str, Any]:
    """SeaweedFS's s3.json: ``keys`` maps admin/mlflow/flows to (access key, secret key)."""
    rw = ("Read", "Write", "List", "Tagging")
    flows = [a for p in FLOW_PREFIXES for a in _on(rw, bucket, p)]
    flows += [a for p in FLOW_READ_ONLY for a in _on(("Read", "List"), bucket, p)]
    actions = {
        "admin": ["Admin", "Read", "Write", "List", "Tagging"],
        "mlflow": _on(rw, bucket, MLFLOW_PREFIX),
        "flows": flows,
    }
    return {
        "identities": [
            {
                "name": name,
                "credentials": [{"accessKey": keys[name][0], "secretKey": keys[name][1]}],
                "actions": actions[name],
            }
            for name in ("admin", "mlflow", "flows")
        ]
    }


def _secret(name: str, data: dict[str, str], namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": data,
    }


def tls_data() -> dict[str, str]:
    """The warmstart-seaweedfs-tls Secret's files: CA certificate, node certificate and key."""
    with tempfile.TemporaryDirectory() as tmp:
        files = make_tls(Path(tmp))
        return {
            "ca.crt": files["ca"].read_text(),
            "tls.crt": files["cert"].read_text(),
            "tls.key": files["key"].read_text(),
        }


def _s3_pair(name: str, keys: tuple[str, str], namespace: str) -> dict[str, Any]:
    pair = {"AWS_ACCESS_KEY_ID": keys[0], "AWS_SECRET_ACCESS_KEY": keys[1]}
    return _secret(name, pair, namespace)


def render_secrets(namespace: str = NAMESPACE, bucket: str = BUCKET) -> list[dict[str, Any]]:
    """Every Secret of infra/k8s/secrets.template.yaml, filled with fresh values."""
    keys = {
        n: ("WS" + secrets.token_hex(9).upper(), _token(20)) for n in ("admin", "mlflow", "flows")
    }
    pg = _token()
    db = f"warmstart:{pg}@postgres:5432"
    jwt = ("SIGNING_KEY", "SIGNING_READ_KEY", "FILER_SIGNING_KEY", "FILER_SIGNING_READ_KEY")
    return [
        _s3_pair("warmstart-s3", keys["admin"], namespace),
        _s3_pair("warmstart-s3-mlflow", keys["mlflow"], namespace),
        _s3_pair("warmstart-s3-flows", keys["flows"], namespace),
        _secret(
            "warmstart-seaweedfs-s3",
            {"s3.json": json.dumps(s3_identities(keys, bucket), indent=2)},
            namespace,
        ),
        _secret("warmstart-seaweedfs-tls", tls_data(), namespace),
        _secret(
            "warmstart-postgres",
            {
                "POSTGRES_USER": "warmstart",
                "POSTGRES_PASSWORD": pg,
                "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://{db}/prefect",
                "MLFLOW_BACKEND_STORE_URI": f"postgresql://{db}/mlflow",
                "MLFLOW_AUTH_DATABASE_URI": f"postgresql://{db}/mlflow_auth",
            },
            namespace,
        ),
        _secret(
            "warmstart-mlflow-auth",
            {"MLFLOW_TRACKING_USERNAME": MLFLOW_ADMIN, "MLFLOW_TRACKING_PASSWORD": _token()},
            namespace,
        ),
        _secret(
            "warmstart-mlflow-flows",
            {"MLFLOW_TRACKING_USERNAME": MLFLOW_FLOWS, "MLFLOW_TRACKING_PASSWORD": _token()},
            namespace,
        ),
        _secret(
            "warmstart-mlflow-server", {"MLFLOW_FLASK_SERVER_SECRET_KEY": _token(32)}, namespace
        ),
        _secret(
            "warmstart-prefect-auth",
            {"PREFECT_API_AUTH_STRING": f"warmstart:{_token()}"},
            namespace,
        ),
        _secret("warmstart-seaweedfs", {f"WEED_JWT_{k}": _token(32) for k in jwt}, namespace),
    ]


def write_secrets(out: Path, namespace: str = NAMESPACE, bucket: str = BUCKET) -> Path:
    """The Secrets as a JSON List in ``out`` (mode 0600, created; never overwritten)."""
    doc = {"apiVersion": "v1", "kind": "List", "items": render_secrets(namespace, bucket)}
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise StackError(
            f"{out} exists: new Secrets would replace every password and key; choose another "
            "--out, or delete the file if you mean to start over"
        ) from None
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
    return out


def _set(doc: Any, path: list[Any], value: Any) -> None:
    for step in path[:-1]:
        doc = doc[step]
    doc[path[-1]] = value


def pool_template(image: str, allow: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The base job template with ``image`` pinned, and the variables in ``allow`` unlocked."""
    template = json.loads(TEMPLATE.read_text())
    unlockable = json.loads(UNLOCKABLE.read_text())
    unknown = sorted(set(allow) - set(unlockable))
    if unknown:
        raise StackError(
            f"--allow {', '.join(unknown)}: not a locked variable; choose from "
            f"{', '.join(sorted(unlockable))}"
        )
    if not image or any(c.isspace() for c in image) or image.startswith("-"):
        raise StackError(
            f"--image {image!r} is not an image reference: e.g. registry/warmstart:1.0"
        )
    config = template["job_configuration"]
    _set(config, ["job_manifest", "spec", "template", "spec", "containers", 0, "image"], image)
    for name in allow:
        entry = copy.deepcopy(unlockable[name])
        if name == "image":
            entry["schema"]["default"] = image
        template["variables"]["properties"][name] = entry["schema"]
        for path in entry["places"]:
            _set(config, path, "{{ " + name + " }}")
    return template


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warmstart.infra.cluster")
    sub = parser.add_subparsers(dest="what", required=True)
    sec = sub.add_parser("secrets", help="every Secret infra/k8s needs, with fresh values")
    sec.add_argument("--out", type=Path, required=True, help="new file (mode 0600)")
    sec.add_argument("--namespace", default=NAMESPACE)
    sec.add_argument("--bucket", default=BUCKET)
    pool = sub.add_parser("pool-template", help="the work pool's base job template")
    pool.add_argument("--image", required=True, help="the warmstart image reference")
    pool.add_argument("--allow", action="append", default=[], help="unlock a variable")
    args = parser.parse_args(argv)
    try:
        if args.what == "secrets":
            path = write_secrets(args.out, args.namespace, args.bucket)
            print(f"wrote {path} (mode 0600): kubectl apply -f {path}")
        else:
            print(json.dumps(pool_template(args.image, args.allow), indent=2))
    except StackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
