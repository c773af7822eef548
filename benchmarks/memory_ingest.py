"""Peak memory of ingest + one training epoch, at two dataset sizes, against a private SeaweedFS.

    .venv/bin/python benchmarks/memory_ingest.py --sizes 20000,100000 --workers 2

For each size: generate an ImageFolder of 64×64 RGB PNGs, then in a fresh process
``ingest_source`` (stream-decode into shards, upload) and one epoch of a small CNN fed by
``warmstart.data.stream.batches`` over the stored shards (``open_dataset`` above the in-memory
threshold). Peak RSS is ``ru_maxrss`` of that process (the main one) and of its largest child
(decode and DataLoader workers). The model is a 3-layer CNN, not resnet18, so that an epoch of
100k images fits a 2-core machine; the data path is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(folder: str, workers: int, batch_size: int) -> None:
    import torch
    from torch import nn

    from warmstart.data import open_dataset
    from warmstart.data.ingest import ingest_source
    from warmstart.data.stream import batches

    torch.set_num_threads(2)
    t = time.perf_counter()
    ref = ingest_source(f"imagefolder:{folder}", workers=workers)
    ingest_s = time.perf_counter() - t
    rss_ingest = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ds = open_dataset(ref.hash)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, ds.num_classes),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    t, n = time.perf_counter(), 0
    for x, y in batches(ds, batch_size=batch_size, workers=workers):
        loss = nn.functional.cross_entropy(model(x.float().div_(255)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(y)
    epoch_s = time.perf_counter() - t
    out = {
        "images": ref.count,
        "in_memory": ds.in_memory,
        "ingest_s": ingest_s,
        "epoch_s": epoch_s,
        "epoch_images": n,
        "rss_after_ingest_mb": rss_ingest / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.workers, args.batch_size)

    from ingest_throughput import make_folder  # this script's folder
    from seaweed import seaweedfs

    results = []
    with tempfile.TemporaryDirectory(prefix="warmstart-mem-") as tmp, seaweedfs(Path(tmp) / "s3"):
        for n in [int(s) for s in args.sizes.split(",")]:
            folder = Path(tmp) / f"folder-{n}"
            t = time.perf_counter()
            make_folder(folder, n, args.workers)
            print(f"generated {n} PNGs in {time.perf_counter() - t:.0f} s", flush=True)
            env = {**os.environ, "WARMSTART_CACHE_DIR": str(Path(tmp) / f"cache-{n}")}
            cmd = [sys.executable, __file__, "--child", str(folder), "--workers", str(args.workers)]
            t = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"child failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            res = json.loads(line[len("RESULT ") :]) | {"wall_s": time.perf_counter() - t}
            print(json.dumps(res), flush=True)
            results.append(res)
            subprocess.run(["rm", "-rf", str(folder), env["WARMSTART_CACHE_DIR"]], check=False)
    print("\n| images | ingest s | epoch s | peak RSS main MB | peak RSS largest child MB |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['images']:,} | {r['ingest_s']:.0f} | {r['epoch_s']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['peak_child_rss_mb']:.0f} |"
        )
    if len(results) > 1:
        ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
        print(f"\npeak RSS {results[-1]['images']:,} / {results[0]['images']:,}: {ratio:.2f}×")


if __name__ == "__main__":
    main()
