"""Every credential of the local stack, generated on first use and kept in the state folder.

- ``s3.json``: the S3 key pair, in SeaweedFS's identity format (``weed mini -s3.config``).
- ``secrets.json``: MLflow's admin password and Flask secret key, Prefect's API password and
  SeaweedFS's JWT signing keys. A key missing from an older file is added, the others kept.
- ``env``: the client variables (``eval $(warmstart env)``).

All three are written with mode 0600 and never printed by ``up``/``status``/``down``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, fields
from pathlib import Path

from .config import StackConfig
from .errors import StackError
from .files import write_private

MLFLOW_USER = "warmstart"  # MLflow basic-auth admin
PREFECT_USER = "warmstart"  # the user part of Prefect's "user:password" auth string


@dataclass(frozen=True)
class StackSecrets:
    mlflow_password: str
    mlflow_flask_key: str  # MLFLOW_FLASK_SERVER_SECRET_KEY: signs the UI's CSRF tokens
    prefect_password: str
    jwt_volume_write: str  # SeaweedFS jwt.signing: master/filer -> volume writes
    jwt_volume_read: str  # jwt.signing.read: volume reads
    jwt_filer_write: str  # jwt.filer_signing: filer writes (and its IAM gRPC)
    jwt_filer_read: str  # jwt.filer_signing.read: filer reads

    @property
    def prefect_auth_string(self) -> str:
        return f"{PREFECT_USER}:{self.prefect_password}"


def _token() -> str:
    # URL- and shell-safe, no ":" (Prefect splits its auth string at the first colon)
    return secrets.token_urlsafe(30)


def s3_credentials(cfg: StackConfig) -> tuple[str, str]:
    """The S3 key pair, generated on first use into ``<home>/s3.json`` (mode 0600)."""
    path = cfg.home / "s3.json"
    if path.exists():
        try:
            ident = json.loads(path.read_text())["identities"][0]["credentials"][0]
            return ident["accessKey"], ident["secretKey"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise StackError(
                f"{path} is not a SeaweedFS identity file: restore it, or delete it to generate "
                "new S3 keys (objects stay, clients need the new keys)"
            ) from None
    access = "WS" + secrets.token_hex(9).upper()
    secret = secrets.token_urlsafe(30)
    config = {
        "identities": [
            {
                "name": "warmstart",
                "credentials": [{"accessKey": access, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    write_private(path, json.dumps(config, indent=2))
    return access, secret


def stack_secrets(cfg: StackConfig) -> StackSecrets:
    """The generated passwords and keys in ``<home>/secrets.json``; missing ones are added."""
    path = cfg.home / "secrets.json"
    stored: dict = {}
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except ValueError:
            raise StackError(
                f"{path} is not valid JSON: restore it, or delete it together with "
                f"{cfg.data / 'mlflow-auth.db'} to generate new passwords"
            ) from None
    names = [f.name for f in fields(StackSecrets)]
    values = {name: stored.get(name) or _token() for name in names}
    if any(stored.get(name) != values[name] for name in names):
        write_private(path, json.dumps(values, indent=2))
    return StackSecrets(**values)


def mlflow_auth(cfg: StackConfig) -> tuple[str, str]:
    """(user, password) of MLflow's basic-auth admin, e.g. for ``httpx.get(..., auth=...)``."""
    return MLFLOW_USER, stack_secrets(cfg).mlflow_password


def prefect_auth(cfg: StackConfig) -> tuple[str, str]:
    """Prefect's auth string as an httpx basic-auth pair (the server compares "user:password")."""
    return PREFECT_USER, stack_secrets(cfg).prefect_password


def s3_env(cfg: StackConfig) -> dict[str, str]:
    """What an S3 client of this stack needs, the checksum settings non-AWS stores need included."""
    access, secret = s3_credentials(cfg)
    return {
        "AWS_ENDPOINT_URL": cfg.s3_url,
        "AWS_ACCESS_KEY_ID": access,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }


def client_env(cfg: StackConfig) -> dict[str, str]:
    """The standard variables every client uses to find the local stack and sign in."""
    keys = stack_secrets(cfg)
    return {
        "PREFECT_API_URL": cfg.prefect_api_url,
        "PREFECT_API_AUTH_STRING": keys.prefect_auth_string,
        "MLFLOW_TRACKING_URI": cfg.mlflow_url,
        "MLFLOW_TRACKING_USERNAME": MLFLOW_USER,
        "MLFLOW_TRACKING_PASSWORD": keys.mlflow_password,
        **s3_env(cfg),
        "WARMSTART_BUCKET": cfg.bucket,
    }


def write_env_file(cfg: StackConfig) -> Path:
    """``<home>/env`` (mode 0600): ``export KEY=VALUE`` lines for ``eval $(warmstart env)``."""
    lines = ["# written by `warmstart up`; load with: eval $(warmstart env)"]
    lines += [f"export {k}={v}" for k, v in client_env(cfg).items()]
    return write_private(cfg.home / "env", "\n".join(lines) + "\n")
