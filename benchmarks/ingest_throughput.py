"""Ingestion and streaming throughput against a private SeaweedFS, side by side with torchvision.

    .venv/bin/python benchmarks/ingest_throughput.py --images 20000 --epochs 3 --workers 2
    .venv/bin/python benchmarks/ingest_throughput.py --images 20000 --train-steps 20  # + resnet18

* first pass: warmstart ``ingest_source`` (list, decode in ``--workers`` processes, write shards,
  hash, upload to SeaweedFS) vs torchvision ImageFolder + DataLoader(num_workers=--workers)
  first epoch;
* later epochs: warmstart streaming the shards from the local shard cache (each shard's sha256
  checked on every read) through ``warmstart.data.stream.batches`` (DataLoader, --workers) vs
  torchvision's later epochs (it decodes every PNG every epoch); also the in-memory path;
* training input (``--train-steps``): resnet18 (weights=None) at 64 px, SGD steps fed from the
  streamed shards vs the same steps on an in-memory tensor.

Every pipeline yields float32 N×C×H×W batches in [0, 1] with labels. Images: generated, 64×64 RGB
PNGs (class-tinted 8×8 noise blocks) in four class folders.
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CLASSES = ("circle", "square", "star", "triangle")


def _write_chunk(args: tuple[str, int, int, int]) -> int:
    """PNGs start..start+n-1: 8×8 blocks of class-tinted noise, upscaled (cheap to draw)."""
    from PIL import Image

    root, start, n, size = args
    rng = np.random.default_rng(start)
    tint = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200], [200, 200, 60]], np.uint8)
    for i in range(start, start + n):
        label = i % len(CLASSES)
        blocks = rng.integers(0, 56, (8, 8, 3), dtype=np.uint8) + tint[label]
        img = np.kron(blocks, np.ones((size // 8, size // 8, 1), np.uint8))
        Image.fromarray(img).save(Path(root) / CLASSES[label] / f"{i:07d}.png", compress_level=1)
    return n


def make_folder(root: Path, n: int, workers: int, size: int = 64) -> None:
    """n size×size RGB PNGs, one folder per class."""
    for c in CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
    step = 2000
    jobs = [(str(root), i, min(step, n - i), size) for i in range(0, n, step)]
    with ProcessPoolExecutor(workers) as pool:
        assert sum(pool.map(_write_chunk, jobs)) == n


def time_epoch(iterable, to_float: bool) -> tuple[float, int]:
    t, n = time.perf_counter(), 0
    for x, _ in iterable:
        if to_float:
            x = x.float().div_(255)
        n += len(x)
    return time.perf_counter() - t, n


def train_steps(model, optimizer, batches, steps: int) -> float:
    """Seconds for `steps` SGD steps of cross-entropy on the batches (uint8 or float)."""
    import torch.nn.functional as F

    it = iter(batches)
    t = time.perf_counter()
    for _ in range(steps):
        x, y = next(it)
        x = x.float().div_(255) if x.dtype.is_floating_point is False else x
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t


def training_input(ds, args) -> list[tuple[float, float]]:
    """(in-memory img/s, streamed img/s) per repeat, resnet18 at the images' size."""
    import torch
    import torchvision

    from warmstart.data.stream import MemoryBatches, batches

    model = torchvision.models.resnet18(weights=None, num_classes=ds.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    bs, steps, out = args.train_batch, args.train_steps, []
    whole = ds.images[np.arange(bs * (steps + 2))]  # the in-memory tensor: enough rows
    labels = ds.labels[: len(whole)]
    train_steps(model, opt, MemoryBatches(whole, labels, bs), 2)  # warm-up
    for rep in range(args.repeats):
        mem = MemoryBatches(whole, labels, bs, seed=rep)
        t_mem = train_steps(model, opt, mem, steps)
        stream = batches(ds, batch_size=bs, seed=rep, workers=args.workers)
        t_stream = train_steps(model, opt, stream, steps)
        out.append((bs * steps / t_mem, bs * steps / t_stream))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2, help="decode / DataLoader processes")
    ap.add_argument("--train-steps", type=int, default=0, help="resnet18 steps (0: skip)")
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import torch
    import torchvision
    from seaweed import seaweedfs  # benchmarks/seaweed.py (this script's folder)
    from torch.utils.data import DataLoader
    from torchvision.transforms import ToTensor

    from warmstart.data import open_dataset
    from warmstart.data.ingest import ingest_source
    from warmstart.data.stream import batches

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="warmstart-bench-") as tmp, seaweedfs(Path(tmp) / "s3"):
        root = Path(tmp) / "folder"
        t = time.perf_counter()
        make_folder(root, args.images, args.workers)
        print(f"generated {args.images} PNGs in {time.perf_counter() - t:.1f} s", flush=True)
        rows: dict[str, list[float]] = {"ours": [], "tv": [], "mem": []}
        tv = torchvision.datasets.ImageFolder(str(root), transform=ToTensor())
        tv_loader = DataLoader(
            tv, batch_size=args.batch_size, shuffle=True, num_workers=args.workers
        )
        s, n = time_epoch(tv_loader, False)
        rows["tv"].append(n / s)
        t = time.perf_counter()
        ref = ingest_source(f"imagefolder:{root}", workers=args.workers)
        rows["ours"].append(args.images / (time.perf_counter() - t))
        print(f"first pass: ours {rows['ours'][0]:,.0f} img/s, torchvision {rows['tv'][0]:,.0f}")
        ds = open_dataset(ref.hash, limit=0)
        for epoch in range(1, args.epochs):
            s, n = time_epoch(tv_loader, False)
            rows["tv"].append(n / s)
            loader = batches(ds, batch_size=args.batch_size, seed=0, workers=args.workers)
            loader.dataset.set_epoch(epoch)
            s, n = time_epoch(loader, True)
            rows["ours"].append(n / s)
        t = time.perf_counter()
        whole = open_dataset(ref.hash)  # in memory when under the threshold
        load_s = time.perf_counter() - t
        for epoch in range(1, args.epochs):
            s, n = time_epoch(batches(whole, batch_size=args.batch_size, seed=epoch), True)
            rows["mem"].append(n / s)
        train = training_input(ds, args) if args.train_steps else []
    report(args, rows, load_s, whole.in_memory, train, torch, torchvision)


def report(args, rows, load_s, in_memory, train, torch, torchvision) -> None:
    later = {k: v[1:] if k != "mem" else v for k, v in rows.items()}

    def spread(v: list[float]) -> str:
        return f"{np.mean(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})" if v else "–"

    print(
        f"\n{args.images} 64×64 RGB PNGs, {args.workers} workers; {os.cpu_count()} CPUs; torch "
        f"{torch.__version__}, torchvision {torchvision.__version__}; {datetime.date.today()}"
    )
    print("\n| pipeline | first pass img/s | later epochs img/s (min–max) |")
    print("|---|---|---|")
    print(
        f"| warmstart: ingest to SeaweedFS, then stream shards from the local cache | "
        f"{rows['ours'][0]:,.0f} | {spread(later['ours'])} |"
    )
    print(
        f"| warmstart: whole set in memory (load {load_s:.1f} s, in memory: {in_memory}) | – | "
        f"{spread(later['mem'])} |"
    )
    print(
        f"| torchvision ImageFolder + DataLoader | {rows['tv'][0]:,.0f} | {spread(later['tv'])} |"
    )
    print(
        f"| ratio warmstart / torchvision | {rows['ours'][0] / rows['tv'][0]:.2f}× | "
        f"{np.mean(later['ours']) / np.mean(later['tv']):.1f}× |"
    )
    if train:
        mem, stream = zip(*train, strict=True)
        ratios = [s / m for m, s in train]
        print(
            f"\nresnet18 64 px, batch {args.train_batch}, {args.train_steps} steps × "
            f"{args.repeats}: in-memory {spread(list(mem))} img/s, streamed "
            f"{spread(list(stream))} img/s, streamed/in-memory {np.mean(ratios):.2f} "
            f"({min(ratios):.2f}–{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
