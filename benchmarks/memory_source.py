"""Peak memory and wall time of a whole `warmstart run` whose *source* is a large ImageFolder,
at two source sizes (same target), against a private stack on free ports.

    nice -n 10 .venv/bin/python benchmarks/memory_source.py --sizes 20000,100000

For each size, in a fresh process: the `warmstart run` CLI (in-process, as the console script
runs it) with `--source imagefolder:<folder>` of 64×64 RGB PNGs (generated as in
benchmarks/memory_ingest.py; smaller sizes are hard-linked subsets of the largest), the
supervised strategy, one pretraining epoch, a small 64×64 target (`builtin:shapes?n=400`),
linear probe, one seed, no confirmation seeds. The run ingests the source (streamed into
shards), checks leakage against every source image, pretrains on it (in memory under
WARMSTART_IN_MEMORY_BYTES, 512 MiB: 20,000 images are 246 MB; streamed above: 100,000 are
1.23 GB), fine-tunes and evaluates on the target. Peak RSS is sampled every 0.2 s with psutil
over the run's whole process tree (main process + decode and DataLoader workers): the sum of
RSS (shared copy-on-write pages of forked workers counted once per process, so an upper bound),
and the main process alone.

The backbone is `bench-xs`, convnet-s with widths 8/16/32 (registered by this script), so an
epoch of 100k 64 px images fits a 2-core CPU machine; the data path is the CLI's own.

    nice -n 10 .venv/bin/python benchmarks/memory_source.py --throughput 8000 --repeats 2

measures the pretraining data path alone (no services): images/s of one supervised epoch on the
same images held in memory vs streamed from cached shards, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET = "builtin:shapes?n=400&size=64x64"


def child(folder: str) -> None:
    """One `warmstart run`, in this process, with the small benchmark backbone registered."""
    from typing import ClassVar

    from warmstart.cli import app
    from warmstart.models.backbones.convnet import ConvNetS
    from warmstart.models.registry import register_backbone

    @register_backbone("bench-xs")
    class BenchXS(ConvNetS):
        widths: ClassVar[tuple[int, int, int]] = (8, 16, 32)

    args = [
        "run",
        "--source",
        f"imagefolder:{folder}",
        "--target",
        TARGET,
        "--k-shot",
        "5",
        "--strategies",
        "supervised",
        "--modes",
        "linear_probe",
        "--seeds",
        "1",
        "--confirm-seeds",
        "0",
        "--epochs",
        "2",
        "--pretrain-epochs",
        "1",
        "--backbone",
        "bench-xs",
        "--device",
        "cpu",
        "--json",
    ]
    app(args)


def pss(pid: int) -> int:
    """Proportional set size in bytes (shared pages split between the processes sharing them)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    line = next((ln for ln in text.splitlines() if ln.startswith("Pss:")), "Pss: 0 kB")
    return int(line.split()[1]) * 1024


def throughput(n: int, repeats: int) -> None:
    """Pretraining images/s on the same n 64×64 RGB images, in memory (`ArrayBatches`) vs
    streamed from locally cached shards (`StreamedBatches`, 2 DataLoader workers), alternating,
    one supervised epoch of `bench-xs` each; no services (shards served by the local cache)."""
    from typing import ClassVar

    import numpy as np

    from warmstart import models as M
    from warmstart.data.dataset import ImageDataset
    from warmstart.data.shards import ShardCache, ShardedImages, ShardIndex, npy_bytes, sha256
    from warmstart.data.streamed import StreamedBatches
    from warmstart.models.backbones.convnet import ConvNetS
    from warmstart.models.registry import register_backbone

    @register_backbone("bench-xs")
    class BenchXS(ConvNetS):
        widths: ClassVar[tuple[int, int, int]] = (8, 16, 32)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, 3, 64, 64), dtype=np.uint8)
    labels = rng.integers(0, 4, n)
    rows = 1365
    with tempfile.TemporaryDirectory(prefix="warmstart-tput-") as tmp:
        cache = ShardCache(Path(tmp), budget=2**40)
        digests = []
        for start in range(0, n, rows):
            data = npy_bytes(images[start : start + rows])
            digests.append(sha256(data))
            cache.put(digests[-1], data)
        keys = tuple(f"shards/{i:05d}.npy" for i in range(len(digests)))
        index = ShardIndex("s3://none/datasets/x", images.shape, rows, keys, tuple(digests))
        ds = ImageDataset(ShardedImages(index, cache), labels, list("abcd"), known_hash="f" * 64)
        cfg = M.PretrainConfig(epochs=1, device="cpu")
        rates: dict[str, list[float]] = {"in memory": [], "streamed": []}
        for _ in range(repeats):
            for name in rates:
                data = images if name == "in memory" else StreamedBatches(ds, labelled=True)
                kw = {"labels": labels, "num_classes": 4} if name == "in memory" else {}
                r = M.pretrain(
                    "supervised",
                    backbone="bench-xs",
                    in_channels=3,
                    image_size=(64, 64),
                    images=data,
                    config=cfg,
                    **kw,
                )
                rates[name].append(r.images_per_second)
                print(f"{name}: {r.images_per_second:.0f} img/s", flush=True)
    for name, v in rates.items():
        print(f"{name}: median {np.median(v):.0f} img/s (min {min(v):.0f}, max {max(v):.0f})")
    ratio = [s / m for s, m in zip(rates["streamed"], rates["in memory"], strict=True)]
    print(f"streamed / in memory: {np.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})")


class TreeSampler(threading.Thread):
    """Peak memory of a process and its descendants, sampled until stopped: the sum of RSS
    (counts pages shared by forked workers once per process), the sum of PSS (each shared page
    split between its sharers: what the tree really holds), the main process's RSS."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        import psutil

        self.root, self.every = psutil.Process(pid), every
        self.peak_sum = self.peak_pss = self.peak_main = self.peak_child = 0
        self.max_procs = 0
        self.done = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.done.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            rss = []
            for p in procs:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.Error:
                    rss.append(0)
            self.peak_sum = max(self.peak_sum, sum(rss))
            self.peak_pss = max(self.peak_pss, sum(pss(p.pid) for p in procs))
            self.peak_main = max(self.peak_main, rss[0])
            self.peak_child = max(self.peak_child, max(rss[1:], default=0))
            self.max_procs = max(self.max_procs, len(procs))
            time.sleep(self.every)


def subset(big: Path, n: int, out: Path) -> None:
    """The first n/4 images of each class folder of `big`, hard-linked into `out`."""
    classes = sorted(p.name for p in big.iterdir() if p.is_dir())
    for c in classes:
        (out / c).mkdir(parents=True, exist_ok=True)
        for f in sorted((big / c).iterdir())[: n // len(classes)]:
            os.link(f, out / c / f.name)


def stack_env(home: Path) -> dict[str, str]:
    sys.path.insert(0, str(HERE))
    from seaweed import free_ports  # this script's folder

    s3, master, volume, filer, admin, mlflow, prefect = free_ports(7)
    return {
        **os.environ,
        "WARMSTART_HOME": str(home),
        "WARMSTART_S3_PORT": str(s3),
        "WARMSTART_WEED_MASTER_PORT": str(master),
        "WARMSTART_WEED_VOLUME_PORT": str(volume),
        "WARMSTART_WEED_FILER_PORT": str(filer),
        "WARMSTART_WEED_ADMIN_PORT": str(admin),
        "WARMSTART_MLFLOW_PORT": str(mlflow),
        "WARMSTART_PREFECT_PORT": str(prefect),
        "PREFECT_HOME": str(home / "prefect-client"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def measure(folder: Path, n: int, env: dict[str, str], tmp: Path) -> dict:
    from warmstart.data.store import in_memory_limit

    cache = tmp / f"cache-{n}"
    env = {**env, "WARMSTART_CACHE_DIR": str(cache)}
    log = tmp / f"run-{n}.log"
    load0 = os.getloadavg()
    t = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(folder)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        sampler = TreeSampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        sampler.done.set()
        sampler.join()
    wall = time.perf_counter() - t
    text = log.read_text()
    if rc != 0:
        sys.exit(f"warmstart run ({n} images) failed, rc {rc}:\n{text[-4000:]}")
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "images": n,
        "wall_s": round(wall, 1),
        "peak_tree_pss_mb": round(sampler.peak_pss / 2**20),
        "peak_tree_rss_mb": round(sampler.peak_sum / 2**20),
        "peak_main_rss_mb": round(sampler.peak_main / 2**20),
        "peak_child_rss_mb": round(sampler.peak_child / 2**20),
        "max_processes": sampler.max_procs,
        "load_start": [round(v, 1) for v in load0],
        "load_end": [round(v, 1) for v in os.getloadavg()],
        "source_mb": round(n * 3 * 64 * 64 / 2**20),
        "source_streamed": n * 3 * 64 * 64 > in_memory_limit(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--folder", default=None, help="an existing generated folder of max(sizes)")
    ap.add_argument("--throughput", type=int, default=0, help="images: data-path rate only")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    if args.throughput:
        return throughput(args.throughput, args.repeats)
    sys.path.insert(0, str(HERE))
    from ingest_throughput import make_folder  # this script's folder

    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="warmstart-memsrc-") as tmp_name:
        tmp = Path(tmp_name)
        big = Path(args.folder) if args.folder else tmp / f"folder-{max(sizes)}"
        if not args.folder:
            t = time.perf_counter()
            make_folder(big, max(sizes), 2)
            print(f"generated {max(sizes)} PNGs in {time.perf_counter() - t:.0f} s", flush=True)
        count = sum(1 for f in big.rglob("*.png"))
        env = stack_env(tmp / "home")
        warmstart = [sys.executable, "-m", "warmstart.cli"]
        subprocess.run([*warmstart, "up"], env=env, check=True, cwd=ROOT)
        try:
            for n in sizes:
                folder = big if n == count else tmp / f"folder-{n}"
                if folder != big:
                    subset(big, n, folder)
                res = measure(folder, n, env, tmp)
                print(json.dumps(res), flush=True)
                results.append(res)
        finally:
            subprocess.run([*warmstart, "down"], env=env, check=False, cwd=ROOT)
    results.sort(key=lambda r: r["images"])
    print(
        "\n| source images | in memory? | wall s | peak PSS, process tree MB | peak RSS, main MB |"
    )
    print("|---|---|---|---|---|")
    for r in results:
        where = "no: streamed" if r["source_streamed"] else "yes"
        print(
            f"| {r['images']:,} | {where} ({r['source_mb']} MB) | {r['wall_s']:.0f} | "
            f"{r['peak_tree_pss_mb']:,} | {r['peak_main_rss_mb']:,} |"
        )
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(
            f"\npeak {b['images']:,} / {a['images']:,}: tree PSS "
            f"{b['peak_tree_pss_mb'] / a['peak_tree_pss_mb']:.2f}×, main RSS "
            f"{b['peak_main_rss_mb'] / a['peak_main_rss_mb']:.2f}×"
        )


if __name__ == "__main__":
    main()
