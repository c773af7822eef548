"""Where the local stack lives: ports, URLs and paths, read from ``WARMSTART_*`` variables.

| variable | default | meaning |
|---|---|---|
| ``WARMSTART_HOME`` | ``.warmstart`` | state folder (data, logs, pid files, credentials, ``env``) |
| ``WARMSTART_BUCKET`` | ``warmstart`` | the bucket for datasets, checkpoints, reports, MLflow artifacts |
| ``WARMSTART_S3_PORT`` | 8333 | SeaweedFS S3 API |
| ``WARMSTART_WEED_MASTER_PORT`` | 9333 | SeaweedFS master (gRPC on +10000) |
| ``WARMSTART_WEED_VOLUME_PORT`` | 9340 | SeaweedFS volume server (gRPC on +10000) |
| ``WARMSTART_WEED_FILER_PORT`` | 8888 | SeaweedFS filer (gRPC on +10000) |
| ``WARMSTART_WEED_ADMIN_PORT`` | 23646 | SeaweedFS admin server: /health only, its UI is off (gRPC on +10000) |
| ``WARMSTART_MLFLOW_PORT`` | 5000 | MLflow tracking server and UI |
| ``WARMSTART_PREFECT_PORT`` | 4200 | Prefect API and UI |
| ``WARMSTART_START_TIMEOUT`` | 120 | seconds each service may take to become healthy |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import StackError

HOST = "127.0.0.1"
GRPC_OFFSET = 10000  # SeaweedFS serves gRPC on every HTTP port + 10000


def _port(env: Mapping[str, str], var: str, default: int) -> int:
    raw = env.get(var, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise StackError(f"{var}={raw!r} is not a port number: set it to an integer") from None
    if not 1 <= value <= 65535 - GRPC_OFFSET:
        raise StackError(f"{var}={value} is out of range: use 1..55535 (gRPC uses +10000)")
    return value


@dataclass(frozen=True)
class StackConfig:
    home: Path
    bucket: str = "warmstart"
    s3_port: int = 8333
    master_port: int = 9333
    volume_port: int = 9340
    filer_port: int = 8888
    admin_port: int = 23646
    mlflow_port: int = 5000
    prefect_port: int = 4200
    start_timeout: float = 120.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackConfig:
        env = os.environ if env is None else env
        raw_timeout = env.get("WARMSTART_START_TIMEOUT", "120")
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise StackError(
                f"WARMSTART_START_TIMEOUT={raw_timeout!r} is not a number of seconds: "
                "set it to e.g. 120"
            ) from None
        return cls(
            home=Path(env.get("WARMSTART_HOME", ".warmstart")).resolve(),
            bucket=env.get("WARMSTART_BUCKET", "warmstart"),
            s3_port=_port(env, "WARMSTART_S3_PORT", 8333),
            master_port=_port(env, "WARMSTART_WEED_MASTER_PORT", 9333),
            volume_port=_port(env, "WARMSTART_WEED_VOLUME_PORT", 9340),
            filer_port=_port(env, "WARMSTART_WEED_FILER_PORT", 8888),
            admin_port=_port(env, "WARMSTART_WEED_ADMIN_PORT", 23646),
            mlflow_port=_port(env, "WARMSTART_MLFLOW_PORT", 5000),
            prefect_port=_port(env, "WARMSTART_PREFECT_PORT", 4200),
            start_timeout=timeout,
        )

    # ------------------------------------------------------------------ URLs

    def url(self, port: int, path: str = "") -> str:
        return f"http://{HOST}:{port}{path}"

    s3_url = property(lambda self: self.url(self.s3_port), doc="the S3 API (SeaweedFS)")
    mlflow_url = property(lambda self: self.url(self.mlflow_port), doc="MLflow server and UI")
    prefect_url = property(lambda self: self.url(self.prefect_port), doc="Prefect UI")
    prefect_api_url = property(lambda self: self.url(self.prefect_port, "/api"), doc="its API")

    @property
    def weed_ports(self) -> dict[str, int]:
        """SeaweedFS's HTTP ports by the variable that sets them (each also has gRPC on +10000)."""
        return {
            "WARMSTART_S3_PORT": self.s3_port,
            "WARMSTART_WEED_MASTER_PORT": self.master_port,
            "WARMSTART_WEED_VOLUME_PORT": self.volume_port,
            "WARMSTART_WEED_FILER_PORT": self.filer_port,
            "WARMSTART_WEED_ADMIN_PORT": self.admin_port,
        }

    # ------------------------------------------------------------------ paths

    logs = property(lambda self: self.home / "logs", doc="logs of every process")
    run = property(lambda self: self.home / "run", doc="pid files and unix sockets")
    data = property(lambda self: self.home / "data", doc="databases and SeaweedFS volumes")
    weed_config = property(
        lambda self: self.home / "seaweedfs",
        doc="SeaweedFS's configuration folder (weed -config_dir): security.toml and tls/",
    )
