"""The local stack: SeaweedFS (S3), an MLflow tracking server and a Prefect server, on 127.0.0.1,
each behind credentials that ``up`` generates. ``up`` / ``down`` / ``status`` over subprocesses
and pid files; no import-time side effects. State (data, logs, pid files, credentials) lives in
``WARMSTART_HOME`` (default ``./.warmstart``), private to this user (folders 0700, files 0600).
Configuration: see ``config.py``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from .config import HOST, StackConfig
from .credentials import client_env, write_env_file
from .errors import StackError
from .files import make_private, private_dir, remove_sockets
from .processes import (
    alive,
    log_tail,
    port_held,
    port_in_use,
    read_pid,
    spawn,
    stop_pid,
    write_pid,
)
from .services import (
    DOWN,
    OK,
    REFUSED,
    Service,
    ServiceStatus,
    command,
    post_start,
    probe,
    refused_hint,
    services,
)

__all__ = [
    "StackConfig",
    "Service",
    "ServiceStatus",
    "client_env",
    "down",
    "launch",
    "service_pid",
    "services",
    "start_service",
    "status",
    "up",
]

Echo = Callable[[str], object]


def service_pid(svc: Service) -> int | None:
    """The pid of our running process for ``svc`` (from its pid file), or None."""
    return read_pid(svc.pid_file, svc.marker)


def _wait_healthy(svc: Service, cfg: StackConfig, proc) -> None:
    deadline = time.monotonic() + cfg.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            svc.pid_file.unlink(missing_ok=True)
            raise StackError(
                f"{svc.name} exited with code {proc.returncode} at start; see {svc.log} "
                f"({log_tail(svc.log)})"
            )
        state = probe(svc, cfg, timeout=30)  # a cold server's first signed call can be slow
        if state == OK:
            return
        if state == REFUSED:
            _abort(svc, proc.pid)
            raise StackError(refused_hint(svc, cfg))
        time.sleep(0.25)
    _abort(svc, proc.pid)
    raise StackError(
        f"{svc.name} did not become healthy within {cfg.start_timeout:.0f} s; see {svc.log}; "
        "raise WARMSTART_START_TIMEOUT or check the log"
    )


def _abort(svc: Service, pid: int) -> None:
    stop_pid(pid)
    _forget(svc, stopped=True)


def _forget(svc: Service, *, stopped: bool = False) -> None:
    """Remove the pid file and the sockets of ``svc``: right away when we just ``stopped`` its
    process (its ports may look busy for a moment), else only if nothing serves its ports."""
    svc.pid_file.unlink(missing_ok=True)
    if stopped or not any(port_in_use(port) for port in svc.ports.values()):
        remove_sockets(svc.sockets)


def launch(svc: Service, cfg: StackConfig) -> subprocess.Popen:
    """Start the process of ``svc`` (its ports must be free) without waiting for it."""
    for var, port in svc.ports.items():
        if port_held(port):
            raise StackError(
                f"{svc.name}: port {port} on {HOST} is held by another program: stop it or set "
                f"{var} to a free port"
            )
    cmd, env = command(svc, cfg)
    remove_sockets(svc.sockets)  # stale ones from a killed process (its ports are free)
    proc = spawn(svc.name, cmd, env=env, cwd=cfg.home, log=svc.log)
    write_pid(svc.pid_file, proc.pid)
    return proc


def start_service(svc: Service, cfg: StackConfig) -> int:
    """Start ``svc`` and wait until it is healthy; returns its pid."""
    proc = launch(svc, cfg)
    _wait_healthy(svc, cfg, proc)
    return proc.pid


def _reuse(svc: Service, cfg: StackConfig, echo: Echo) -> ServiceStatus | None:
    """Our running, healthy process for ``svc``; one that is unhealthy or open (an older
    version's) is stopped and None returned, so that it is started again."""
    pid = service_pid(svc)
    if pid is None:
        return None
    state = probe(svc, cfg)
    if state == OK:
        echo(f"{svc.name:8s} already running (pid {pid}) at {svc.url}")
        post_start(svc, cfg)
        return ServiceStatus(svc.name, svc.url, pid, True, svc.log, "reused")
    echo(f"{svc.name:8s} restarting (pid {pid}): {'not healthy' if state == DOWN else state}")
    _abort(svc, pid)
    return None


def up(cfg: StackConfig | None = None, *, echo: Echo = print) -> list[ServiceStatus]:
    """Start whatever is not running, all at once; reuse what is. On failure stop what this call
    started."""
    cfg = cfg or StackConfig.from_env()
    private_dir(cfg.home)
    make_private(cfg.home)
    write_env_file(cfg)  # generates every credential before any service needs one
    launched: list[tuple[Service, subprocess.Popen, float]] = []
    out: dict[str, ServiceStatus] = {}
    try:
        for svc in services(cfg):
            if (reused := _reuse(svc, cfg, echo)) is not None:
                out[svc.name] = reused
            else:  # the servers start side by side: MLflow needs S3 only for artifacts
                launched.append((svc, launch(svc, cfg), time.monotonic()))
        for svc, proc, t0 in launched:
            _wait_healthy(svc, cfg, proc)
            post_start(svc, cfg)
            echo(
                f"{svc.name:8s} started (pid {proc.pid}) at {svc.url} in {time.monotonic() - t0:.1f} s"
            )
            out[svc.name] = ServiceStatus(svc.name, svc.url, proc.pid, True, svc.log, "started")
    except BaseException:
        for svc, proc, _ in launched:
            _abort(svc, proc.pid)
        for svc in services(cfg):
            if service_pid(svc) is None:
                _forget(svc)
        raise
    return [out[svc.name] for svc in services(cfg)]


def _stop_others(cfg: StackConfig, echo: Echo) -> list[str]:
    """Other processes we started (e.g. the Prefect worker): every remaining run/*.pid."""
    stopped = []
    for extra in sorted(cfg.run.glob("*.pid")) if cfg.run.exists() else []:
        try:
            pid = int(extra.read_text().strip())
        except ValueError:
            extra.unlink()
            continue
        if alive(pid):
            stop_pid(pid)
            stopped.append(extra.stem)
            echo(f"{extra.stem:8s} stopped (pid {pid})")
        extra.unlink(missing_ok=True)
    return stopped


def down(cfg: StackConfig | None = None, *, echo: Echo = print) -> list[str]:
    """Stop the processes this stack started (by pid file); keep all data; remove the sockets."""
    cfg = cfg or StackConfig.from_env()
    stopped = []
    for svc in reversed(services(cfg)):
        pid = service_pid(svc)
        if pid is None:
            _forget(svc)
            echo(f"{svc.name:8s} not running")
            continue
        stop_pid(pid)
        _forget(svc, stopped=True)
        stopped.append(svc.name)
        echo(f"{svc.name:8s} stopped (pid {pid})")
    return stopped + _stop_others(cfg, echo)


def status(cfg: StackConfig | None = None) -> list[ServiceStatus]:
    """Each service's URL, pid and health; never a credential."""
    cfg = cfg or StackConfig.from_env()
    out = []
    for svc in services(cfg):
        pid = service_pid(svc)
        state = probe(svc, cfg)
        healthy = state == OK
        note = ""
        if pid is None and state != DOWN:
            note = "answering, but not started by this stack"
        elif pid is not None and not healthy:
            note = f"{'unhealthy' if state == DOWN else state}; see {svc.log}"
        elif pid is None:
            note = "stopped"
        out.append(
            ServiceStatus(svc.name, svc.url, pid, healthy and pid is not None, svc.log, note)
        )
    return out


# Old private names that tests outside infra/ still use; new code uses the public names above.
_read_pid = service_pid
_start = start_service
_stop_pid = stop_pid
