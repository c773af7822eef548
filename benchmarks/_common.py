"""What every benchmark prints about where it ran (imported by the scripts of this folder as
``from _common import …``: the script's own folder is first on ``sys.path``)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_name() -> str:
    """The CUDA device torch sees, or "no GPU"."""
    import torch  # deferred: the table-only modes of some scripts never need it

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, e.g. "2.37 1.96 2.44"."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def machine_line() -> str:
    """One line for BENCHMARKS.md: CPUs, GPU, Python, date (UTC) and load average now."""
    return (
        f"Machine: {os.cpu_count()} CPUs ({cpu_name()}), {gpu_name()}, Python "
        f"{platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"load average {load_average()}"
    )
