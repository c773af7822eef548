"""Register the deployments of ``deploy/prefect.yaml`` and start a process worker.

The worker is a child of ``warmstart deploy`` with a pid file under ``<home>/run/worker.pid``, so
``warmstart down`` stops it with the rest of the stack.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from .config import StackConfig
from .credentials import client_env, prefect_auth
from .errors import StackError
from .files import private_dir
from .processes import alive, find_bin, spawn, stop_pid, write_pid

POOL = "warmstart-local"
ROOT = Path(__file__).resolve().parent.parent


def worker_env(cfg: StackConfig) -> dict[str, str]:
    """The environment of `prefect deploy` and the worker (and so of every flow run it starts):
    the stack's client variables, credentials included."""
    env = dict(os.environ)
    env.update(client_env(cfg))
    env["WARMSTART_ROOT"] = str(ROOT)
    env["WARMSTART_HOME"] = str(cfg.home)
    env.setdefault("PREFECT_HOME", str(cfg.home / "prefect-client"))
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


def _prefect(args: list[str], env: dict[str, str], timeout: float = 180) -> str:
    cmd = [find_bin("prefect") or "prefect", "--no-prompt", *args]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        raise StackError(f"`prefect {' '.join(args)}` failed: {' | '.join(tail)}")
    return out.stdout


def ensure_pool(cfg: StackConfig) -> None:
    api = cfg.prefect_api_url
    r = httpx.get(f"{api}/work_pools/{POOL}", auth=prefect_auth(cfg), timeout=10)
    if r.status_code == 200:
        return
    _prefect(["work-pool", "create", POOL, "--type", "process"], worker_env(cfg))


def register(cfg: StackConfig) -> list[str]:
    """``prefect deploy --all`` on deploy/prefect.yaml; returns the deployment names."""
    ensure_pool(cfg)
    _prefect(
        ["deploy", "--all", "--prefect-file", str(ROOT / "deploy" / "prefect.yaml")],
        worker_env(cfg),
    )
    r = httpx.post(
        f"{cfg.prefect_api_url}/deployments/filter", json={}, auth=prefect_auth(cfg), timeout=10
    )
    if r.status_code != 200:
        raise StackError(
            f"prefect: listing deployments answered HTTP {r.status_code}: check "
            "PREFECT_API_AUTH_STRING and `warmstart status`"
        )
    return sorted(d["name"] for d in r.json())


def worker_pid_file(cfg: StackConfig) -> Path:
    return cfg.home / "run" / "worker.pid"


def start_worker(cfg: StackConfig, timeout: float = 90) -> int:
    """Start (or reuse) a process worker polling ``warmstart-local``."""
    pid_file = worker_pid_file(cfg)
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text())
            if alive(pid, "worker"):
                return pid
        except ValueError:
            pass
    log = cfg.logs / "worker.log"
    private_dir(cfg.run)
    cmd = [find_bin("prefect") or "prefect", "worker", "start", "--pool", POOL, "--type", "process"]
    proc = spawn("worker", cmd, env=worker_env(cfg), cwd=ROOT, log=log)
    write_pid(pid_file, proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file.unlink(missing_ok=True)
            raise StackError(f"worker exited with code {proc.returncode}; see {log}")
        r = httpx.post(
            f"{cfg.prefect_api_url}/work_pools/{POOL}/workers/filter",
            json={},
            auth=prefect_auth(cfg),
            timeout=10,
        )
        if r.status_code == 200 and r.json():
            return proc.pid
        time.sleep(1)
    stop_pid(proc.pid)
    pid_file.unlink(missing_ok=True)
    raise StackError(f"worker did not register with {POOL} within {timeout:.0f} s; see {log}")


def deploy(cfg: StackConfig | None = None) -> tuple[list[str], int]:
    cfg = cfg or StackConfig.from_env()
    names = register(cfg)
    return names, start_worker(cfg)
