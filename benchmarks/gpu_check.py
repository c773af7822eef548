"""GPU check: each pretraining strategy and each transfer mode runs a few hundred steps on CUDA
(bf16 autocast, channels_last) and reports images/s and peak memory. On a machine without CUDA it
prints 'skipped: no CUDA' and exits 0; `--device cpu --steps 5` exercises the same code on CPU.

    .venv/bin/python benchmarks/gpu_check.py [--device cuda] [--steps 300] [--backbone resnet18]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from warmstart import models as M  # noqa: E402


def peak_mib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    a = p.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA")
        return 0
    t_all = time.perf_counter()
    rng = np.random.default_rng(0)
    n = a.batch_size * 8
    x = rng.integers(0, 256, (n, a.channels, a.size, a.size), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    size = (a.size, a.size)
    dev = {"device": a.device}
    if a.device == "cuda":
        print(
            f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16 autocast + channels_last"
        )
    print(
        f"{a.backbone} {a.channels}x{a.size}x{a.size}, batch {a.batch_size}, {a.steps} steps per run"
    )
    print(f"{'run':28s} {'images/s':>10s} {'peak MiB':>10s} {'seconds':>8s} {'final loss':>10s}")
    pcfg = M.PretrainConfig(epochs=1, min_steps_per_epoch=a.steps, batch_size=a.batch_size, **dev)
    state = None
    for strategy in M.list_strategies():
        reset_peak(a.device)
        r = M.pretrain(
            strategy,
            backbone=a.backbone,
            in_channels=a.channels,
            image_size=size,
            images=x,
            labels=y,
            num_classes=10,
            config=pcfg,
        )
        assert all(np.isfinite(h["loss"]) for h in r.history), r.history
        state = r.backbone_state if strategy == "supervised" else state
        print(
            f"{'pretrain:' + strategy:28s} {r.images_per_second:10.0f} {peak_mib(a.device):10.0f} "
            f"{r.seconds:8.1f} {r.history[-1]['loss']:10.4f}"
        )
    tcfg = M.TrainConfig(epochs=1, min_steps_per_epoch=a.steps, batch_size=a.batch_size, **dev)
    modes = ["finetune", "linear_probe", "lp_ft", M.list_transfer_modes(a.backbone)[-2]]
    for mode, init in [(m, state) for m in modes] + [("scratch", None)]:
        reset_peak(a.device)
        r = M.fit_target(
            backbone=a.backbone,
            init_state=init,
            mode="finetune" if mode == "scratch" else mode,
            in_channels=a.channels,
            image_size=size,
            num_classes=10,
            train=(x, y),
            val=(x[:512], y[:512]),
            config=tcfg,
        )
        assert np.isfinite(r.history[-1]["train_loss"]), r.history
        print(
            f"{'fit:' + mode:28s} {r.images_per_second:10.0f} {peak_mib(a.device):10.0f} "
            f"{r.seconds:8.1f} {r.history[-1]['train_loss']:10.4f}"
        )
    print(f"total {time.perf_counter() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
