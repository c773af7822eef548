"""Golden check of the CPU training path: every pretraining strategy and the transfer modes on
small fixed-seed data, one CPU thread; prints one sha256 per run over its weights (bytes) and its
history (without wall times). Record before a change to models/, compare after: the CPU path
must not change bit for bit.

    .venv/bin/python benchmarks/golden_cpu.py --write /tmp/golden.json   # before the change
    .venv/bin/python benchmarks/golden_cpu.py --check /tmp/golden.json   # after: exit 1 on a diff

Hashes depend on the machine's CPU kernels and the torch build: compare on the same machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from warmstart import models as M  # noqa: E402

TIMES = {"seconds"}


def digest(weights: dict[str, torch.Tensor], history: list[dict]) -> str:
    h = hashlib.sha256()
    for k in sorted(weights):
        h.update(k.encode())
        h.update(weights[k].detach().cpu().contiguous().numpy().tobytes())
    rows = [{k: v for k, v in r.items() if k not in TIMES} for r in history]
    h.update(json.dumps(rows, sort_keys=True, default=repr).encode())
    return h.hexdigest()


def data(n: int, size: int, channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable toy images: class c brightens row band c (plus noise)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.int64)
    x = rng.integers(0, 80, (n, channels, size, size)).astype(np.int64)
    for c in range(10):
        r = (c * size) // 10
        x[y == c, :, r : r + max(1, size // 10), :] += 150
    return x.clip(0, 255).astype(np.uint8), y


def runs(backbone: str, size: int, channels: int) -> dict[str, str]:
    src = data(256, size, channels, 0)
    tr, va = data(60, size, channels, 1), data(40, size, channels, 2)
    geo = {"in_channels": channels, "image_size": (size, size)}
    out: dict[str, str] = {}
    state = None
    pcfg = M.PretrainConfig(
        epochs=2, min_steps_per_epoch=4, batch_size=32, device="cpu", num_threads=1
    )
    for strategy in ("supervised", "gan", "autoencoder"):
        r = M.pretrain(
            strategy,
            backbone=backbone,
            **geo,
            images=src[0],
            labels=src[1],
            num_classes=10,
            config=pcfg,
        )
        out[f"{backbone}/pretrain:{strategy}"] = digest(r.backbone_state, r.history)
        state = r.backbone_state if strategy == "supervised" else state
    tcfg = M.TrainConfig(
        epochs=2, min_steps_per_epoch=4, batch_size=16, device="cpu", num_threads=1, hflip=True
    )
    modes = ["finetune", "linear_probe", "lp_ft", M.list_transfer_modes(backbone)[-2]]
    for mode, init in [(m, state) for m in modes] + [("scratch", None)]:
        r = M.fit_target(
            backbone=backbone,
            init_state=init,
            mode="finetune" if mode == "scratch" else mode,
            **geo,
            num_classes=10,
            train=tr,
            val=va,
            config=tcfg,
        )
        w = r.model.state_dict()
        out[f"{backbone}/fit:{mode}"] = digest(w, r.history + r.probe_history)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", type=Path, help="store the hashes here")
    g.add_argument("--check", type=Path, help="compare with hashes stored by --write")
    a = p.parse_args()
    t = time.perf_counter()
    got: dict[str, str] = {}
    for backbone, size, channels in (("convnet-s", 8, 1), ("resnet18", 16, 3)):
        got.update(runs(backbone, size, channels))
    for k, v in got.items():
        print(f"{k:36s} {v[:16]}")
    print(f"{len(got)} runs in {time.perf_counter() - t:.1f} s, torch {torch.__version__}")
    if a.write:
        a.write.write_text(json.dumps(got, indent=1, sort_keys=True))
        print(f"written to {a.write}")
    if a.check:
        want = json.loads(a.check.read_text())
        bad = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
        print("IDENTICAL to " + str(a.check) if not bad else f"DIFFERENT: {bad}")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
