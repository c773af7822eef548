"""Ingest throughput: parallel first-pass decode into the canonical form, then epochs read from
the stored form, against torchvision ImageFolder + DataLoader(num_workers=2) decoding every epoch.

    .venv/bin/python benchmarks/ingest_throughput.py --images 20000 --epochs 3
    .venv/bin/python benchmarks/ingest_throughput.py --s3   # store/load through S3 (needs the stack env)

Both pipelines yield the same thing per batch: float32 tensors in [0, 1], N×C×H×W, with labels.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def _write_chunk(args: tuple[str, np.ndarray, np.ndarray, list[str], int]) -> int:
    from PIL import Image

    root, images, labels, classes, start = args
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        path = Path(root) / classes[lab] / f"{start + i:06d}.png"
        Image.fromarray(img.transpose(1, 2, 0)).save(path)
    return len(images)


def make_folder(root: Path, n: int, workers: int) -> None:
    """n 32×32 RGB PNGs of generated shapes in one folder per class."""
    from warmstart.data import load_source

    ds = load_source(f"builtin:shapes?n={n}&size=32x32", seed=0)
    for c in ds.classes:
        (root / c).mkdir(parents=True, exist_ok=True)
    step = 1000
    jobs = [
        (str(root), ds.images[i : i + step], ds.labels[i : i + step], ds.classes, i)
        for i in range(0, n, step)
    ]
    with ProcessPoolExecutor(workers) as pool:
        assert sum(pool.map(_write_chunk, jobs)) == n


def batches(images: np.ndarray, labels: np.ndarray, batch_size: int, rng: np.random.Generator):
    """A minimal shuffled batch iterator over the canonical uint8 arrays."""
    import torch

    order = rng.permutation(len(labels))
    for i in range(0, len(order), batch_size):
        idx = np.sort(order[i : i + batch_size])
        x = torch.from_numpy(images[idx]).float().div_(255)
        yield x, torch.from_numpy(labels[idx])


def time_epoch(iterable) -> tuple[float, int]:
    t, n = time.perf_counter(), 0
    for x, _ in iterable:
        n += len(x)
    return time.perf_counter() - t, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decode processes")
    ap.add_argument("--s3", action="store_true", help="store/load via S3 instead of local .npy")
    args = ap.parse_args()

    import torch
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision.transforms import ToTensor

    from warmstart.data import load_dataset, load_source, store_dataset

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="warmstart-bench-") as tmp:
        root = Path(tmp) / "folder"
        t = time.perf_counter()
        make_folder(root, args.images, args.workers)
        print(f"generated {args.images} PNGs in {time.perf_counter() - t:.1f} s")

        # ours: first pass = parallel decode + store; epochs 2+ = read stored form + iterate
        t = time.perf_counter()
        ds = load_source(f"imagefolder:{root}", workers=args.workers)
        decode_s = time.perf_counter() - t
        if args.s3:
            ref = store_dataset(ds)
            where = ref.uri
        else:
            store = Path(tmp) / "stored"
            store.mkdir()
            np.save(store / "images.npy", ds.images)
            np.save(store / "labels.npy", ds.labels)
            where = str(store)
        first_s = time.perf_counter() - t
        ours = []
        for _ in range(args.epochs - 1):
            t = time.perf_counter()
            if args.s3:
                loaded = load_dataset(ref.hash)
                images, labels = loaded.images, loaded.labels
            else:
                images = np.load(store / "images.npy", mmap_mode="r")
                labels = np.load(store / "labels.npy")
            _, n = time_epoch(batches(images, labels, args.batch_size, rng))
            ours.append(n / (time.perf_counter() - t))

        # torchvision: decode every epoch
        tv = torchvision.datasets.ImageFolder(str(root), transform=ToTensor())
        loader = DataLoader(tv, batch_size=args.batch_size, shuffle=True, num_workers=2)
        tv_rates = []
        for _ in range(args.epochs):
            s, n = time_epoch(loader)
            tv_rates.append(n / s)

    tv_first, tv_rest = tv_rates[0], float(np.mean(tv_rates[1:] or tv_rates))
    ours_first, ours_rest = args.images / first_s, float(np.mean(ours))
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in open("/proc/cpuinfo")
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    print(
        f"\nmachine: {os.cpu_count()} CPUs, {cpu}; torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}; {datetime.date.today()}"
    )
    print(
        f"stored form: {where}; parallel decode alone: {args.images / decode_s:,.0f} img/s "
        f"({args.workers} processes)"
    )
    print("\n| pipeline | first pass img/s | epochs 2+ img/s |")
    print("|---|---|---|")
    print(
        f"| warmstart (decode once, read canonical arrays) | {ours_first:,.0f} | {ours_rest:,.0f} |"
    )
    print(f"| torchvision ImageFolder + DataLoader(2 workers) | {tv_first:,.0f} | {tv_rest:,.0f} |")
    print(f"| ratio | {ours_first / tv_first:.2f}× | {ours_rest / tv_rest:.1f}× |")


if __name__ == "__main__":
    main()
