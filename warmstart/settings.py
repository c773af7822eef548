"""Where the services are. Every client finds them through the standard variables only.

``PREFECT_API_URL``, ``MLFLOW_TRACKING_URI``, ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``; plus ``WARMSTART_BUCKET`` for our bucket.
The local stack (``warmstart up``) writes them to ``.warmstart/env``; the CLI loads that file
for any variable the environment does not already set, so an exported variable (MinIO, AWS S3,
a remote MLflow or Prefect) always wins.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_BUCKET = "warmstart"


def state_dir() -> Path:
    """The local stack's state folder (``WARMSTART_HOME``, default ``./.warmstart``)."""
    return Path(os.environ.get("WARMSTART_HOME", ".warmstart")).resolve()


def env_file() -> Path:
    return state_dir() / "env"


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


def load_env(path: Path | None = None, *, override: bool = False) -> dict[str, str]:
    """Put the stack's variables into ``os.environ`` (existing ones win unless ``override``)."""
    values = read_env_file(path)
    for key, value in values.items():
        if override or key not in os.environ:
            os.environ[key] = value
    # boto3 >= 1.36 checksums corrupt uploads on non-AWS stores (see CONVENTIONS.md).
    os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    return values


def bucket() -> str:
    return os.environ.get("WARMSTART_BUCKET", DEFAULT_BUCKET)


SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "PREFECT_API_KEY",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
)


def secret_values() -> list[str]:
    """The values that must never appear in logs, params or artifacts."""
    return [v for k in SECRET_VARIABLES if (v := os.environ.get(k)) and len(v) >= 4]


def redact(text: str) -> str:
    for value in secret_values():
        text = text.replace(value, "***")
    return text
