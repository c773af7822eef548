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

from warmstart.errors import StackError

from .stack import StackConfig, _alive, _bin, _stop_pid, client_env

POOL = "warmstart-local"
ROOT = Path(__file__).resolve().parent.parent


def _env(cfg: StackConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.update(client_env(cfg))
    env["WARMSTART_ROOT"] = str(ROOT)
    env["WARMSTART_HOME"] = str(cfg.home)
    env.setdefault("PREFECT_HOME", str(cfg.home / "prefect-client"))
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


def _prefect(args: list[str], env: dict[str, str], timeout: float = 180) -> str:
    cmd = [_bin("prefect") or "prefect", "--no-prompt", *args]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        raise StackError(f"`prefect {' '.join(args)}` failed: {' | '.join(tail)}")
    return out.stdout


def ensure_pool(cfg: StackConfig) -> None:
    api = cfg.prefect_api_url
    r = httpx.get(f"{api}/work_pools/{POOL}", timeout=10)
    if r.status_code == 200:
        return
    _prefect(["work-pool", "create", POOL, "--type", "process"], _env(cfg))


def register(cfg: StackConfig) -> list[str]:
    """``prefect deploy --all`` on deploy/prefect.yaml; returns the deployment names."""
    ensure_pool(cfg)
    _prefect(
        ["deploy", "--all", "--prefect-file", str(ROOT / "deploy" / "prefect.yaml")], _env(cfg)
    )
    r = httpx.post(f"{cfg.prefect_api_url}/deployments/filter", json={}, timeout=10)
    return sorted(d["name"] for d in r.json())


def worker_pid_file(cfg: StackConfig) -> Path:
    return cfg.home / "run" / "worker.pid"


def start_worker(cfg: StackConfig, timeout: float = 90) -> int:
    """Start (or reuse) a process worker polling ``warmstart-local``."""
    pid_file = worker_pid_file(cfg)
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text())
            if _alive(pid, "worker"):
                return pid
        except ValueError:
            pass
    log = cfg.home / "logs" / "worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [_bin("prefect") or "prefect", "worker", "start", "--pool", POOL, "--type", "process"]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            cmd,
            env=_env(cfg),
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file.unlink(missing_ok=True)
            raise StackError(f"worker exited with code {proc.returncode}; see {log}")
        r = httpx.post(
            f"{cfg.prefect_api_url}/work_pools/{POOL}/workers/filter", json={}, timeout=10
        )
        if r.status_code == 200 and r.json():
            return proc.pid
        time.sleep(1)
    _stop_pid(proc.pid)
    pid_file.unlink(missing_ok=True)
    raise StackError(f"worker did not register with {POOL} within {timeout:.0f} s; see {log}")


def deploy(cfg: StackConfig | None = None) -> tuple[list[str], int]:
    cfg = cfg or StackConfig.from_env()
    names = register(cfg)
    return names, start_worker(cfg)
