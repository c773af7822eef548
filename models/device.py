"""Device choice, thread count and seeding: the only places the training code touches globals."""

from __future__ import annotations

import os
import random
import threading

import numpy as np
import torch

from .errors import ModelError


def select_device(force: str | None = None) -> torch.device:
    """cuda > mps > cpu, unless `force` names one (an unavailable forced device is an error)."""
    if force:
        dev = torch.device(force)
        ok = {
            "cpu": True,
            "cuda": torch.cuda.is_available(),
            "mps": torch.backends.mps.is_available(),
        }.get(dev.type, False)
        if not ok:
            raise ModelError(f"device {force!r} is not available here; use 'cpu' or leave it unset")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_count() -> int:
    """CPUs this process may run on (respects affinity / container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads: `num_threads`, else the CPU count; an OMP_NUM_THREADS set by
    the caller is respected. Returns the count in effect."""
    if num_threads is not None:
        n = max(1, int(num_threads))
    elif os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    else:
        n = cpu_count()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


# torch's, numpy's and python's global RNGs are process-wide. Stages that train at once in one
# process (the flow's worker threads) seed them and build their models under this lock, so each
# stage draws the same initial weights as it would alone; after that, training draws only from
# the stage's own torch.Generator. Results depend on the machine's configuration (threads per
# stage), not on which stages happen to run beside each other.
GLOBAL_RNG = threading.RLock()

# CPU-only machines: threads each training stage gets. Chosen by benchmarks/cpu_slots.py (the
# demo's stages are small convnets that gain little from a second thread; BENCHMARKS §6).
CPU_THREADS_PER_STAGE = 1


def cpu_slots(cores: int | None = None) -> int:
    """Training stages a CPU-only machine runs at once: ``WARMSTART_CPU_SLOTS`` if set, else
    ``cores // CPU_THREADS_PER_STAGE`` (at least one). ``warmstart up`` gives the Prefect `gpu`
    tag limit this many slots when it sees no GPU (``infra/services.py: gpu_slots``)."""
    explicit = os.environ.get("WARMSTART_CPU_SLOTS", "").strip()
    if explicit:
        return max(1, int(explicit))
    return max(1, (cores or cpu_count()) // CPU_THREADS_PER_STAGE)


def stage_threads(cores: int | None = None) -> int:
    """Intra-op threads per training stage on a CPU-only machine: its cores over its slots."""
    cores = cores or cpu_count()
    return max(1, cores // cpu_slots(cores))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; a disabled context elsewhere (CPU bf16 is slower for small convs)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA (tensor-core friendly), contiguous elsewhere."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format
