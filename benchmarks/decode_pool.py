"""Where does the ImageFolder decoder's process pool start to pay off? (issue 13)

`warmstart.data.decode.Decoder` decodes in-process below ``PARALLEL_MIN`` images and in a pool
of worker processes (fork) from there on. This measures both paths side by side on the same
files, pool start and shutdown included (what an ingestion pays), alternating the order, and
prints the ratio in-process / pool per size: above 1.0 the pool wins.

    .venv/bin/python benchmarks/decode_pool.py --sizes 32,128,256,512,2048 --repeats 5

Images: PNG files written once to a temporary folder, 64×64 RGB (photo-like noise) and the
UCI-digits shape (8×8 gray), decoded to their own size.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from warmstart.data import decode


def write_pngs(folder: Path, n: int, size: int, channels: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        shape = (size, size, 3) if channels == 3 else (size, size)
        block = rng.integers(0, 256, size=(size // 8, size // 8) + shape[2:], dtype=np.uint8)
        img = np.kron(block, np.ones((8, 8) + (1,) * (len(shape) - 2), dtype=np.uint8))
        noise = rng.integers(0, 24, size=shape, dtype=np.uint8)
        path = folder / f"{i:06d}.png"
        Image.fromarray(img + noise).save(path)
        paths.append(str(path))
    return paths


def timed(paths: list[str], workers: int, channels: int, size: int) -> float:
    start = time.perf_counter()
    opts = {"channels": channels, "size": (size, size), "crop": None}
    with decode.Decoder(len(paths), workers, **opts) as run:
        assert (run.pool is None) == (workers == 1)
        out = run(paths)
    assert all(arr is not None for arr, _ in out)
    return time.perf_counter() - start


def measure(paths: list[str], repeats: int, workers: int, channels: int, size: int) -> dict:
    one, pool = [], []
    for r in range(repeats):
        order = ((1, one), (workers, pool)) if r % 2 == 0 else ((workers, pool), (1, one))
        for w, sink in order:
            sink.append(timed(paths, w, channels, size))
    ratios = [a / b for a, b in zip(one, pool, strict=True)]
    return {
        "in_process_s": statistics.median(one),
        "pool_s": statistics.median(pool),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="32,128,256,512,2048")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    decode.PARALLEL_MIN = 0  # force the pool whenever workers > 1
    print("| images | kind | in-process s | pool s | in-process / pool (min–max) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, px, ch in (("64×64 RGB", 64, 3), ("8×8 gray", 8, 1)):
            folder = Path(tmp) / kind.replace("×", "x").replace(" ", "_")
            folder.mkdir()
            paths = write_pngs(folder, max(sizes), px, ch)
            for n in sizes:
                m = measure(paths[:n], args.repeats, args.workers, ch, px)
                print(
                    f"| {n:,} | {kind} | {m['in_process_s']:.3f} | {m['pool_s']:.3f} | "
                    f"{m['ratio']:.2f} ({m['ratio_min']:.2f}–{m['ratio_max']:.2f}) |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
