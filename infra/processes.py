"""Processes the stack starts: found in this environment, spawned privately, tracked by pid file,
stopped by process group. Nothing here touches a process it did not start."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .config import HOST
from .files import UMASK, open_private_log, write_private


def find_bin(name: str) -> str | None:
    """A console script of this environment (the venv's bin folder first, then PATH)."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def port_held(port: int, grace: float = 2.0) -> bool:
    """Whether ``port`` stays in use for ``grace`` seconds: a process that just exited can leave
    its listening socket behind for a moment (seen with weed right after `down`)."""
    deadline = time.monotonic() + grace
    while port_in_use(port):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)
    return False


def alive(pid: int, marker: str = "") -> bool:
    """Whether ``pid`` runs (not a zombie) and its command line contains ``marker``."""
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


def read_pid(pid_file: Path, marker: str = "") -> int | None:
    """The pid in ``pid_file`` if that process is still ours and alive, else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid, marker) else None


def write_pid(pid_file: Path, pid: int) -> None:
    write_private(pid_file, str(pid))


def stop_pid(pid: int, timeout: float = 15.0) -> None:
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
            if waited == pid or not alive(pid):
                return
            time.sleep(0.1)


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return ""
    return " | ".join(line.strip()[:160] for line in text[-lines:])


def spawn(
    name: str, cmd: list[str], *, env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen:
    """Start ``cmd`` in its own session with umask 077, output appended to ``log`` (0600)."""
    with open_private_log(log) as fh:
        fh.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
        fh.flush()
        return subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            umask=UMASK,
        )
