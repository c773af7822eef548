"""Where the services are and how to sign in. Every client uses the standard variables only.

``PREFECT_API_URL`` + ``PREFECT_API_AUTH_STRING``, ``MLFLOW_TRACKING_URI`` +
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, ``AWS_ENDPOINT_URL`` +
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_DEFAULT_REGION``; plus
``WARMSTART_BUCKET`` for our bucket. The local stack (``warmstart up``) writes them to
``.warmstart/env``; the CLI loads that file for any variable the environment does not already
set, so an exported variable (MinIO, AWS S3, a remote MLflow or Prefect) always wins — and the
file's credentials for a service are only used with the file's address of that service, never
sent to another server you exported.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

DEFAULT_BUCKET = "warmstart"

# The credentials that belong to each service address in the env file.
CREDENTIALS_OF = {
    "PREFECT_API_URL": ("PREFECT_API_AUTH_STRING",),
    "MLFLOW_TRACKING_URI": ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"),
    "AWS_ENDPOINT_URL": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
}


def state_dir() -> Path:
    """The local stack's state folder (``WARMSTART_HOME``, default ``./.warmstart``)."""
    return Path(os.environ.get("WARMSTART_HOME", ".warmstart")).resolve()


def env_file() -> Path:
    return state_dir() / "env"


def unclosed_runs_file() -> Path:
    """MLflow runs an outage left open, ended at the next start (``tracking.unclosed``)."""
    return state_dir() / "unclosed-runs.json"


def read_env_file(path: Path | None = None) -> dict[str, str]:
    """Parse ``export KEY=VALUE`` lines of the stack's env file (missing file: empty dict)."""
    path = path or env_file()
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip().strip("'\"")
    return out


def _foreign_credentials(values: dict[str, str]) -> set[str]:
    """The file's credentials whose service the environment points at another address."""
    out: set[str] = set()
    for address, keys in CREDENTIALS_OF.items():
        exported = os.environ.get(address)
        if exported is not None and exported != values.get(address):
            out.update(keys)
    return out


def load_env(path: Path | None = None, *, override: bool = False) -> dict[str, str]:
    """Put the stack's variables into ``os.environ`` (existing ones win unless ``override``).

    Without ``override``, the file's credentials for a service are skipped when the environment
    already names another address for it (they would be sent to that server).
    """
    values = read_env_file(path)
    skip = set() if override else _foreign_credentials(values)
    for key, value in values.items():
        if key not in skip and (override or key not in os.environ):
            os.environ[key] = value
    # boto3 >= 1.36 checksums break or corrupt uploads on non-AWS stores (seaweedfs#6548).
    os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    return values


def bucket() -> str:
    return os.environ.get("WARMSTART_BUCKET", DEFAULT_BUCKET)


# Never logged, never in params, tags or artifacts (user names are not secret: a name like
# "warmstart" must not be blanked out of every text).
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_SERVER_API_AUTH_STRING",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
)
_AUTH_STRINGS = ("PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING")


def _basic(user_password: str) -> str:
    return base64.b64encode(user_password.encode()).decode()


def secret_values() -> list[str]:
    """The values that must never appear in logs, params or artifacts, longest first.

    Besides each variable's value: the password part of an auth string ("user:password") and the
    base64 form an HTTP ``Authorization: Basic`` header carries.
    """
    env = os.environ
    values = {v for k in SECRET_VARIABLES if (v := env.get(k))}
    for key in _AUTH_STRINGS:
        if ":" in (auth := env.get(key, "")):
            values |= {auth.split(":", 1)[1], _basic(auth)}
    user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        values.add(_basic(f"{user}:{password}"))
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def redact(text: str) -> str:
    for value in secret_values():
        text = text.replace(value, "***")
    return text
