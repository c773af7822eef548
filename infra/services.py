"""The three services of the local stack, how each is started and how its health is judged.

Healthy means more than "answers": an anonymous request must be refused (S3 403, MLflow and
Prefect 401) and, for MLflow and Prefect, a request with the stack's credentials must succeed.
A server that answers anonymous calls (e.g. one started by an older warmstart) is not healthy,
so ``up`` restarts it when it is ours.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .config import StackConfig
from .credentials import mlflow_auth, prefect_auth
from .errors import StackError
from .seaweedfs import sockets, weed_command
from .servers import mlflow_command, prefect_command

# probe() results
DOWN, OK, OPEN, REFUSED = "down", "ok", "open to anonymous requests", "refuses our credentials"


@dataclass
class Service:
    name: str
    url: str
    port_var: str
    ports: dict[str, int]  # variable -> port that must be free (or ours)
    log: Path
    pid_file: Path
    marker: str  # a string our process's command line contains
    sockets: list[Path] = field(default_factory=list)  # removed once the process is gone


@dataclass
class ServiceStatus:
    name: str
    url: str
    pid: int | None
    healthy: bool
    log: Path
    note: str = ""


def services(cfg: StackConfig) -> list[Service]:
    logs, run = cfg.logs, cfg.run
    return [
        Service(
            "s3",
            cfg.s3_url,
            "WARMSTART_S3_PORT",
            cfg.weed_ports,
            logs / "seaweedfs.log",
            run / "seaweedfs.pid",
            "mini",
            sockets(cfg),
        ),
        Service(
            "mlflow",
            cfg.mlflow_url,
            "WARMSTART_MLFLOW_PORT",
            {"WARMSTART_MLFLOW_PORT": cfg.mlflow_port},
            logs / "mlflow.log",
            run / "mlflow.pid",
            "mlflow",
        ),
        Service(
            "prefect",
            cfg.prefect_url,
            "WARMSTART_PREFECT_PORT",
            {"WARMSTART_PREFECT_PORT": cfg.prefect_port},
            logs / "prefect.log",
            run / "prefect.pid",
            "prefect",
        ),
    ]


COMMANDS: dict[str, Callable[[StackConfig], tuple[list[str], dict[str, str]]]] = {
    "s3": weed_command,
    "mlflow": mlflow_command,
    "prefect": prefect_command,
}


def command(svc: Service, cfg: StackConfig) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start ``svc`` (its config files written first)."""
    if svc.name not in COMMANDS:
        raise StackError(f"unknown service {svc.name!r}")
    return COMMANDS[svc.name](cfg)


_CLIENT: httpx.Client | None = None


def _http() -> httpx.Client:
    """One client for every probe: ``httpx.get`` builds a client, and with it an SSL context
    from the CA bundle, per call; polling a starting server with it spent most of the CPU of a
    waiting ``warmstart up`` (the local services speak plain HTTP on 127.0.0.1)."""
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = httpx.Client(verify=False, trust_env=False)
    return _CLIENT


def _secured(url: str, auth: tuple[str, str], timeout: float, health: str) -> str:
    """DOWN until ``health`` answers 200; then OPEN, REFUSED or OK for ``url``."""
    http = _http()
    if http.get(health, timeout=timeout).status_code != 200:
        return DOWN
    if http.get(url, timeout=timeout).status_code not in (401, 403):
        return OPEN
    status = http.get(url, auth=auth, timeout=timeout).status_code
    if status in (401, 403):
        return REFUSED
    return OK if status == 200 else DOWN


def _weed_state(cfg: StackConfig, timeout: float) -> str:
    """S3 refuses anonymous requests (403) and the master has no HTTP API (else: an older,
    open ``weed`` still runs)."""
    status = _http().get(f"{cfg.s3_url}/{cfg.bucket}", timeout=timeout).status_code
    if status != 403:
        return OPEN if status == 200 else DOWN
    master = _http().get(cfg.url(cfg.master_port, "/dir/status"), timeout=timeout)
    return OPEN if master.status_code == 200 else OK


def probe(svc: Service, cfg: StackConfig, timeout: float = 5.0) -> str:
    """DOWN, OK, OPEN (answers anonymous requests) or REFUSED (rejects our credentials)."""
    try:
        if svc.name == "s3":
            return _weed_state(cfg, timeout)
        if svc.name == "mlflow":
            search = f"{cfg.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
            health = f"{cfg.mlflow_url}/health"
            return _secured(search, mlflow_auth(cfg), timeout, health)
        if svc.name == "prefect":
            api = cfg.prefect_api_url
            return _secured(f"{api}/admin/version", prefect_auth(cfg), timeout, f"{api}/health")
    except httpx.HTTPError:
        return DOWN
    return DOWN


def healthy(svc: Service, cfg: StackConfig, timeout: float = 5.0) -> bool:
    return probe(svc, cfg, timeout) == OK


def refused_hint(svc: Service, cfg: StackConfig) -> str:
    """How to recover when a server rejects the stack's own credentials."""
    if svc.name == "mlflow":
        return (
            f"mlflow refuses the admin password in {cfg.home / 'secrets.json'}: its user store "
            f"{cfg.data / 'mlflow-auth.db'} was made with another one; stop the stack, delete "
            "that file (MLflow recreates the admin on start) and run `warmstart up` again"
        )
    return (
        f"{svc.name} refuses the credentials in {cfg.home / 'secrets.json'}: another server "
        f"holds port {svc.url.rsplit(':', 1)[-1]}; stop it or set {svc.port_var}"
    )


def _nvidia_gpus() -> int:
    """GPUs the NVIDIA driver sees: /proc/driver/nvidia/gpus, else `nvidia-smi -L`; 0 if none."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir():
        return len(list(gpus.iterdir()))
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


# Training stages share the Prefect tag limit `gpu`: one slot per visible GPU (times
# WARMSTART_SLOTS_PER_GPU, for stages small enough to share one), and on a CPU-only machine one
# slot per CPU_THREADS_PER_STAGE cores (WARMSTART_CPU_SLOTS overrides it). The same rule as
# warmstart.models.device.cpu_slots, which gives each stage cores // slots threads.
CPU_THREADS_PER_STAGE = 1


def cores() -> int:
    """CPUs this process may run on (affinity and container limits respected)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def cpu_slots() -> int:
    explicit = os.environ.get("WARMSTART_CPU_SLOTS", "").strip()
    if explicit:
        return max(1, int(explicit))
    return max(1, cores() // CPU_THREADS_PER_STAGE)


def slot_plan() -> tuple[str, int, int]:
    """(device kind, training slots, CPU threads per stage or 0 on a GPU) for this machine."""
    gpus = visible_gpus()
    if gpus:
        per_gpu = max(1, int(os.environ.get("WARMSTART_SLOTS_PER_GPU", "1") or 1))
        return "gpu", gpus * per_gpu, 0
    slots = cpu_slots()
    return "cpu", slots, max(1, cores() // slots)


def gpu_slots() -> int:
    """Slots of the `gpu` tag limit: see ``slot_plan`` (asks the driver: no torch import)."""
    return slot_plan()[1]


def visible_gpus() -> int:
    """NVIDIA GPUs the driver sees, less those CUDA_VISIBLE_DEVICES hides; 0 if none."""
    found = _nvidia_gpus()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = []
        for item in visible.split(","):
            if not item.strip() or item.strip() == "-1":
                break  # CUDA stops at the first invalid entry
            ids.append(item)
        found = min(found, len(ids)) if found else len(ids)
    return found


def ensure_gpu_limit(
    api_url: str, slots: int | None = None, *, auth: tuple[str, str] | None = None
) -> int:
    """Create (or update) the tag concurrency limit ``gpu`` that training tasks share."""
    slots = slots or gpu_slots()
    # The API answers /health before its database is ready: 503s right after a start are retried.
    deadline = time.monotonic() + 60
    while True:
        try:
            r = httpx.post(
                f"{api_url}/concurrency_limits/",
                json={"tag": "gpu", "concurrency_limit": slots},
                auth=auth,
                timeout=10,
            )
            status = r.status_code
        except httpx.HTTPError:
            status = 599
        if status < 400:
            return slots
        if status < 500 or time.monotonic() > deadline:
            raise StackError(
                f"prefect: could not create the `gpu` concurrency limit (HTTP {status}); "
                "check PREFECT_API_AUTH_STRING and the prefect log under WARMSTART_HOME/logs"
            )
        time.sleep(1)


def post_start(svc: Service, cfg: StackConfig) -> None:
    if svc.name == "prefect":
        ensure_gpu_limit(cfg.prefect_api_url, auth=prefect_auth(cfg))
