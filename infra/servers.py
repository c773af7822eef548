"""Command lines and environments of the MLflow and Prefect servers, both behind a password.

MLflow runs its ``basic-auth`` app (admin user from ``<home>/mlflow-auth.ini``, nobody else has
any permission); the artifacts it proxies go to S3 with the stack's keys and the checksum
settings non-AWS stores need. Prefect checks ``PREFECT_SERVER_API_AUTH_STRING`` on every API
call except /health (its UI asks for the same "user:password" string on a login page).
"""

from __future__ import annotations

import os

from .config import HOST, StackConfig
from .credentials import MLFLOW_USER, s3_env, stack_secrets
from .files import private_dir, write_private
from .processes import find_bin

# Client settings the servers must not inherit: they would point the server at another server.
_CLIENT_ONLY = (
    "PREFECT_API_URL",
    "PREFECT_API_AUTH_STRING",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)


def server_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _CLIENT_ONLY}


AUTH_CACHE_TTL_S = 60  # a changed password or removed user takes effect within this


def mlflow_auth_ini(cfg: StackConfig) -> str:
    """MLflow's basic-auth configuration (keys as in mlflow/server/auth/basic_auth.ini)."""

    def esc(value: str) -> str:  # configparser interpolates "%"
        return value.replace("%", "%%")

    db = f"sqlite:///{cfg.data / 'mlflow-auth.db'}"
    return (
        "# written by `warmstart up` (mode 0600); the admin is created on the first start only\n"
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {esc(db)}\n"
        f"admin_username = {MLFLOW_USER}\n"
        f"admin_password = {esc(stack_secrets(cfg).mlflow_password)}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        # A verified credential is remembered for a minute (keyed by an HMAC of the password
        # under a per-process random key): without it every request pays the password hash
        # check, ~0.2 s of server CPU, ~15 requests per training stage.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_TTL_S}\n"
    )


def mlflow_command(cfg: StackConfig) -> tuple[list[str], dict[str, str]]:
    ini = write_private(cfg.home / "mlflow-auth.ini", mlflow_auth_ini(cfg))
    private_dir(cfg.data)
    env = server_env()
    env.update(
        {
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": stack_secrets(cfg).mlflow_flask_key,
            "MLFLOW_S3_ENDPOINT_URL": cfg.s3_url,
            **s3_env(cfg),  # the artifact proxy writes to S3
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            # MLflow 3 starts a job-runner process for its GenAI jobs (trace roll-ups, judges);
            # warmstart uses none of them, and the process polls on a 2-core machine.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
    )
    port = cfg.mlflow_port
    cmd = [
        find_bin("mlflow") or "mlflow",
        "server",
        "--app-name",
        "basic-auth",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{cfg.data / 'mlflow.db'}",
        "--artifacts-destination",
        f"s3://{cfg.bucket}/mlflow",
        "--allowed-hosts",
        f"{HOST}:{port},localhost:{port},{HOST},localhost",
        "--cors-allowed-origins",
        ",".join(_origins(port)),
    ]
    return cmd, env


def _origins(port: int) -> list[str]:
    return [f"http://{HOST}:{port}", f"http://localhost:{port}"]


def prefect_command(cfg: StackConfig) -> tuple[list[str], dict[str, str]]:
    prefect_home = private_dir(cfg.home / "prefect")
    private_dir(cfg.data)
    env = server_env()
    env.update(
        {
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_API_AUTH_STRING": stack_secrets(cfg).prefect_auth_string,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{cfg.data / 'prefect.db'}",
            "PREFECT_UI_API_URL": cfg.prefect_api_url,
            "PREFECT_SERVER_API_HOST": HOST,
            "PREFECT_SERVER_API_PORT": str(cfg.prefect_port),
            # Browsers may read API answers only from the UI's own origin (default "*"). CSRF
            # tokens stay off: the UI signs in with an Authorization header a browser never adds
            # by itself (no cookie, no basic-auth prompt), and tokens would break API clients.
            "PREFECT_SERVER_CORS_ALLOWED_ORIGINS": ",".join(_origins(cfg.prefect_port)),
            # Tasks waiting for a `gpu` slot re-ask at most every 0.5 s (default 10 s): with
            # two dozen short training tasks the default wait alone cost ~20% of the demo.
            "PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS": os.environ.get(
                "PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS", "0.5"
            ),
            "DO_NOT_TRACK": "1",
        }
    )
    cmd = [
        find_bin("prefect") or "prefect",
        "server",
        "start",
        "--host",
        HOST,
        "--port",
        str(cfg.prefect_port),
        "--analytics-off",
    ]
    return cmd, env
