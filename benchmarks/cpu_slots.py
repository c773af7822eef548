"""How to split a CPU-only machine between training stages: N stages at once with T threads each
(N x T = the cores), for the demo's stages, measured in one process the way the flow runs them
(worker threads, one process-wide ``torch.set_num_threads``), configurations interleaved
(ABAB...) so a machine shared with other work loads them alike. It also checks that one
configuration gives the same numbers twice (determinism for a fixed machine configuration) and
says whether the thread count changes them.

    .venv/bin/python benchmarks/cpu_slots.py [--stages 8] [--epochs 12] [--repeats 2]

The stages: the demo's target fine-tuning (convnet-s, UCI digits 8x8, k = 10: 100 training and
up to 300 validation images, ``finetune`` from random init, 12 epochs), each on its own seed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import cpu_name, load_average  # noqa: E402  (this script's folder)

from warmstart import models as M  # noqa: E402
from warmstart.models.device import configure_threads, cpu_count  # noqa: E402


def digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images * 255.0 / 16.0).round().clip(0, 255).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(0)
    train, val = [], []
    for c in range(10):
        idx = rng.permutation(np.where(y == c)[0])
        train.append(idx[:10])
        val.append(idx[10:40])
    t, v = np.concatenate(train), np.concatenate(val)
    return (x[t], y[t]), (x[v], y[v])


def stage(seed: int, threads: int, epochs: int, data) -> tuple[float, list[float]]:
    train, val = data
    cfg = M.TrainConfig(epochs=epochs, seed=seed, device="cpu", num_threads=threads)
    r = M.fit_target(
        backbone="convnet-s",
        init_state=None,
        mode="finetune",
        in_channels=1,
        image_size=(8, 8),
        num_classes=10,
        train=train,
        val=val,
        config=cfg,
    )
    return r.best_val_acc, [h["val_loss"] for h in r.history]


def run(slots: int, threads: int, n: int, epochs: int, data) -> tuple[float, list]:
    configure_threads(threads)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=slots) as pool:
        out = list(pool.map(lambda s: stage(s, threads, epochs, data), range(n)))
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    cores = cpu_count()
    configs = [(s, cores // s) for s in range(1, cores + 1) if cores % s == 0]
    data = digits()
    print(f"# {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC · {cpu_name()} · {cores} cores")
    print(f"# load average before: {load_average()}")
    walls: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    results: dict[tuple[int, int], list] = {}
    for _ in range(args.repeats):
        for c in configs:
            wall, out = run(*c, args.stages, args.epochs, data)
            walls[c].append(wall)
            if c in results:
                assert out == results[c], f"{c}: the same configuration gave other numbers"
            results[c] = out
    print(f"# load average after: {load_average()}")
    base = min(walls[configs[0]])
    print(f"\n{args.stages} stages x {args.epochs} epochs, best of {args.repeats} (interleaved)\n")
    print("| stages at once x threads | wall s (each run) | stages/min | vs 1 x all cores |")
    print("|---|---|---|---|")
    for c in configs:
        best = min(walls[c])
        each = ", ".join(f"{w:.1f}" for w in walls[c])
        print(
            f"| {c[0]} x {c[1]} | {best:.1f} ({each}) | {60 * args.stages / best:.1f} | "
            f"{base / best:.2f}x |"
        )
    same = all(results[c] == results[configs[0]] for c in configs)
    print(f"\nthe same numbers twice per configuration: yes; across thread counts: {same}")
    accs = {c: np.mean([acc for acc, _ in results[c]]) for c in configs}
    print(
        "mean best val acc per configuration: "
        + ", ".join(f"{c}: {a:.4f}" for c, a in accs.items())
    )


if __name__ == "__main__":
    main()
