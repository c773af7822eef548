"""Dataset format: our `.npy` shards vs webdataset, litdata and mosaicml-streaming, all against
one private SeaweedFS (issue 13). One command, side by side, repeated:

    python3.11 -m venv /tmp/libvenv
    /tmp/libvenv/bin/pip install numpy pillow boto3 webdataset wids litdata mosaicml-streaming \
        /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
    /tmp/libvenv/bin/pip uninstall -y torch torchvision   # borrow the project's torch instead:
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/libvenv/lib/python3.11/site-packages/zz-project-venv.pth
    nice -n 10 .venv/bin/python benchmarks/streaming_libs.py --images 20000 --repeats 3 \
        --lib-python /tmp/libvenv/bin/python
    nice -n 10 .venv/bin/python benchmarks/streaming_libs.py --probe-checksums  # boto3 defaults

(PyPI's torchvision 0.28 does not load against the CPU torch 2.13 wheel, and mosaicml-streaming
imports torchvision; the .pth, appended after the venv's own site-packages, gives every side the
project's torch 2.14.1.)

The libraries live in their own venv (they are not dependencies of warmstart); this script runs
under the project venv (it starts SeaweedFS and runs warmstart's side) and runs every measurement
in a fresh child process (`worker` sub-command): the project venv's python for ours, the library
venv's for the others. A child times only the operation, not its start, imports or the in-process
data generation. Every measured operation starts cold: a fresh process and an empty local cache.

Data: N images 3×64×64 uint8 (random pixels, so nothing compresses), labels i % 10, generated
in-process from a fixed seed (the same bytes in every child). No compression anywhere, shards of
16 MiB, raw uint8 arrays (no PNG/JPEG). Operations, each format in turn (order rotated per repeat):

* write: the dataset from memory into the store, upload included, until it is readable;
* epoch: one shuffled pass from S3, uint8 batches of 256, a torch DataLoader with 2 workers (each
  library's own loader/pipeline where it has one); checks count, label sum and a pixel checksum;
* kshot: open the stored dataset and fetch 100 given indices (10 per class × 10 classes, random),
  checked equal to the generated images.

A warm-up round (small data, every format and operation) runs first and is not reported.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = 10
SHAPE = (3, 64, 64)
SHARD_BYTES = 16 * 2**20
BATCH = 256
WORKERS = 2
FORMATS = ("warmstart", "webdataset", "litdata", "mosaic")
HERE = Path(__file__).resolve()


# ---------------------------------------------------------------- data (same in every process)


def make_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1234)
    images = rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % CLASSES
    return images, labels


def kshot_indices(labels: np.ndarray, repeat: int, k: int = 10) -> np.ndarray:
    rng = np.random.default_rng(100 + repeat)
    picks = [rng.choice(np.flatnonzero(labels == c), k, replace=False) for c in range(CLASSES)]
    return rng.permutation(np.concatenate(picks))


def checksum(images: np.ndarray, labels: np.ndarray) -> tuple[int, int, int]:
    """Order-independent: count, label sum, sum of a few pixels per image."""
    pix = images.reshape(len(images), -1)[:, ::997].astype(np.int64).sum()
    return len(images), int(labels.sum()), int(pix)


# ---------------------------------------------------------------- S3 helpers (boto3 only)


def s3():
    import boto3
    from botocore.config import Config

    if os.environ.get("SL_BOTO_DEFAULTS") == "1":  # --probe-checksums: boto3 as it comes
        return boto3.client("s3")
    cfg = Config(
        request_checksum_calculation="when_required", response_checksum_validation="when_required"
    )
    return boto3.client("s3", config=cfg)  # endpoint and keys from AWS_* in the environment


def upload_file(path: str, bucket: str, key: str) -> None:
    s3().upload_file(path, bucket, key)


def presign(bucket: str, key: str) -> str:
    return s3().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=7200
    )


def delete_prefix(bucket: str, prefix: str = "") -> int:
    client, n = s3(), 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
            n += len(keys)
    return n


def prefix_bytes(bucket: str, prefix: str) -> tuple[int, int]:
    objs = [
        o
        for page in s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]
    return len(objs), sum(o["Size"] for o in objs)


# ---------------------------------------------------------------- warmstart (our shards)


def ws_write(images, labels, bucket, prefix, tmp):
    from warmstart.data.dataset import ImageDataset
    from warmstart.data.store import store_dataset

    ds = ImageDataset(images, labels, [str(c) for c in range(CLASSES)], name="bench")
    t = time.perf_counter()
    ref = store_dataset(ds, bucket=bucket)
    return time.perf_counter() - t, {"hash": ref.hash}


_WS: dict = {}


def ws_digest(bucket: str) -> str:
    """The stored dataset's content hash (a user holds it from the DatasetRef; found before timing)."""
    return next(
        o["Key"].split("/")[1]
        for o in s3().list_objects_v2(Bucket=bucket, Prefix="datasets/")["Contents"]
        if o["Key"].endswith("manifest.json")
    )


def _ws_open(bucket, prefix):
    from warmstart.data.store import open_dataset

    return open_dataset(
        _WS["digest"], bucket=bucket, limit=0
    )  # limit=0: always the shard-backed path


def ws_epoch(bucket, prefix, tmp):
    from warmstart.data.stream import batches

    t = time.perf_counter()
    ds = _ws_open(bucket, prefix)
    acc = Acc()
    for x, y in batches(ds, batch_size=BATCH, shuffle=True, seed=0, workers=WORKERS):
        acc.add(x.numpy(), y.numpy())
    return time.perf_counter() - t, acc


def ws_kshot(bucket, prefix, tmp, idx):
    t = time.perf_counter()
    ds = _ws_open(bucket, prefix)
    out = ds.images[idx]
    return time.perf_counter() - t, out


# ---------------------------------------------------------------- webdataset (+ wids for random access)


def wds_write(images, labels, bucket, prefix, tmp):
    import webdataset as wds

    shards: list[dict] = []

    def post(fname: str) -> None:  # the docs' pattern: write locally, upload each finished shard
        key = f"{prefix}/{Path(fname).name}"
        upload_file(fname, bucket, key)
        shards.append({"url": key, "filesize": os.path.getsize(fname)})
        os.remove(fname)

    t = time.perf_counter()
    counts: list[int] = []
    with wds.ShardWriter(
        f"{tmp}/shard-%06d.tar", maxsize=SHARD_BYTES, maxcount=10**9, post=post
    ) as sink:
        for i in range(len(images)):
            sink.write({"__key__": f"{i:08d}", "npy": images[i], "cls": int(labels[i])})
            if sink.count == 1:
                counts.append(0)
            counts[-1] += 1
    # a wids index (shard list with sample counts) so the set can be read by index too
    for s, c in zip(shards, counts, strict=True):
        s["nsamples"] = c
    s3().put_object(
        Bucket=bucket, Key=f"{prefix}/index.json", Body=json.dumps({"shardlist": shards}).encode()
    )
    return time.perf_counter() - t, {"shards": len(shards)}


def _wds_shards(bucket, prefix):
    spec = json.loads(s3().get_object(Bucket=bucket, Key=f"{prefix}/index.json")["Body"].read())
    for s in spec["shardlist"]:
        s["url"] = presign(bucket, s["url"])  # http(s) URLs: webdataset/wids fetch them with curl
    return spec["shardlist"]


def wds_epoch(bucket, prefix, tmp):
    import torch
    import webdataset as wds

    t = time.perf_counter()
    urls = [s["url"] for s in _wds_shards(bucket, prefix)]
    pipe = (
        wds.WebDataset(urls, shardshuffle=len(urls), empty_check=False)
        .shuffle(1000)
        .decode()
        .to_tuple("npy", "cls")
        .batched(BATCH, partial=True)
    )
    acc = Acc()
    for x, y in wds.WebLoader(pipe, batch_size=None, num_workers=WORKERS):
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        acc.add(x.numpy(), y.numpy())
    return time.perf_counter() - t, acc


def wds_kshot(bucket, prefix, tmp, idx):
    import wids

    t = time.perf_counter()
    ds = wids.ShardListDataset(_wds_shards(bucket, prefix), cache_dir=f"{tmp}/wids", lru_size=64)
    out = np.stack([ds[int(i)][".npy"] for i in idx])
    return time.perf_counter() - t, out


# ---------------------------------------------------------------- litdata


def _lit_opts() -> dict:
    return {
        "endpoint_url": os.environ["AWS_ENDPOINT_URL"],
        "aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
    }


_LIT: dict = {}


def lit_allow_http() -> None:
    """litdata 0.2.76 uploads (and prefetches) through obstore, whose S3Store it builds without
    ``allow_http``: a plain-http endpoint (SeaweedFS on localhost) fails with "BadScheme", and
    obstore does not read AWS_ALLOW_HTTP there. Patch the client options litdata passes."""
    import litdata.streaming.downloader as dl

    dl._OBSTORE_CLIENT_OPTIONS = {**dl._OBSTORE_CLIENT_OPTIONS, "allow_http": "true"}


def _lit_sample(i: int) -> dict:
    return {"index": i, "image": _LIT["images"][i], "label": int(_LIT["labels"][i])}


def lit_write(images, labels, bucket, prefix, tmp):
    import litdata

    _LIT.update(images=images, labels=labels)
    t = time.perf_counter()
    litdata.optimize(
        fn=_lit_sample,
        inputs=list(range(len(images))),
        output_dir=f"s3://{bucket}/{prefix}",
        chunk_bytes=SHARD_BYTES,
        num_workers=WORKERS,
        storage_options=_lit_opts(),
        start_method="fork",
    )
    seconds = time.perf_counter() - t
    # optimize() with several workers does not keep input order. To fetch given images later a
    # user needs where each one went: read the set once (not timed) and store that map.
    ds = litdata.StreamingDataset(
        f"s3://{bucket}/{prefix}", cache_dir=f"{tmp}/lit", storage_options=_lit_opts()
    )
    where = np.empty(len(images), np.int64)
    for pos, b in enumerate(litdata.StreamingDataLoader(ds, batch_size=1, num_workers=0)):
        where[int(b["index"])] = pos
    buf = io.BytesIO()
    np.save(buf, where)
    s3().put_object(Bucket=bucket, Key=f"{prefix}-positions.npy", Body=buf.getvalue())
    return seconds, {}


def lit_epoch(bucket, prefix, tmp):
    import litdata

    t = time.perf_counter()
    ds = litdata.StreamingDataset(
        f"s3://{bucket}/{prefix}", cache_dir=f"{tmp}/lit", shuffle=True, storage_options=_lit_opts()
    )
    acc = Acc()
    for b in litdata.StreamingDataLoader(ds, batch_size=BATCH, num_workers=WORKERS):
        acc.add(b["image"].numpy(), b["label"].numpy())
    return time.perf_counter() - t, acc


def lit_kshot(bucket, prefix, tmp, idx):
    import litdata

    t = time.perf_counter()
    ds = litdata.StreamingDataset(
        f"s3://{bucket}/{prefix}", cache_dir=f"{tmp}/lit", storage_options=_lit_opts()
    )
    where = np.load(
        io.BytesIO(s3().get_object(Bucket=bucket, Key=f"{prefix}-positions.npy")["Body"].read())
    )
    samples = [ds[int(where[i])] for i in idx]
    elapsed = time.perf_counter() - t
    assert all(int(s["index"]) == int(i) for s, i in zip(samples, idx, strict=False)), (
        "litdata position map wrong"
    )
    return elapsed, np.stack([np.asarray(s["image"]) for s in samples])


# ---------------------------------------------------------------- mosaicml-streaming (MDS)


def mds_write(images, labels, bucket, prefix, tmp):
    from streaming import MDSWriter

    columns = {"image": "ndarray:uint8:" + ",".join(map(str, SHAPE)), "label": "int64"}
    t = time.perf_counter()
    with MDSWriter(
        out=(f"{tmp}/mds", f"s3://{bucket}/{prefix}"),
        columns=columns,
        compression=None,
        hashes=["sha256"],
        size_limit=SHARD_BYTES,
    ) as out:
        for i in range(len(images)):
            out.write({"image": images[i], "label": int(labels[i])})
    return time.perf_counter() - t, {}


def _mds(bucket, prefix, tmp, **kw):
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    return StreamingDataset(
        remote=f"s3://{bucket}/{prefix}", local=f"{tmp}/mds-cache", validate_hash="sha256", **kw
    )


def mds_epoch(bucket, prefix, tmp):
    from torch.utils.data import DataLoader

    t = time.perf_counter()
    ds = _mds(bucket, prefix, tmp, shuffle=True, batch_size=BATCH)
    acc = Acc()
    for b in DataLoader(ds, batch_size=BATCH, num_workers=WORKERS):
        acc.add(b["image"].numpy(), b["label"].numpy())
    return time.perf_counter() - t, acc


def mds_kshot(bucket, prefix, tmp, idx):
    t = time.perf_counter()
    ds = _mds(bucket, prefix, tmp)
    out = np.stack([ds[int(i)]["image"] for i in idx])
    return time.perf_counter() - t, out


# ---------------------------------------------------------------- worker (one timed operation)


class Acc:
    def __init__(self) -> None:
        self.n = self.lab = self.pix = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        assert x.dtype == np.uint8 and x.shape[1:] == SHAPE, (x.dtype, x.shape)
        n, lab, pix = checksum(x, y)
        self.n, self.lab, self.pix = self.n + n, self.lab + lab, self.pix + pix


IMPORTS = {  # imported before the clock starts (mosaic's import alone pulls in transformers)
    "warmstart": ("boto3", "torch", "warmstart.data.store", "warmstart.data.stream"),
    "webdataset": ("boto3", "torch", "webdataset", "wids"),
    "litdata": ("boto3", "torch", "litdata"),
    "mosaic": ("boto3", "torch", "streaming"),
}
OPS = {
    "warmstart": (ws_write, ws_epoch, ws_kshot),
    "webdataset": (wds_write, wds_epoch, wds_kshot),
    "litdata": (lit_write, lit_epoch, lit_kshot),
    "mosaic": (mds_write, mds_epoch, mds_kshot),
}


def worker(args: argparse.Namespace) -> None:
    os.environ.setdefault(
        "S3_ENDPOINT_URL", os.environ["AWS_ENDPOINT_URL"]
    )  # mosaic reads this one
    if args.fmt == "litdata" and os.environ["AWS_ENDPOINT_URL"].startswith("http:"):
        lit_allow_http()
    for mod in IMPORTS[args.fmt]:
        importlib.import_module(mod)
    images, labels = make_data(args.images)
    if args.fmt == "warmstart" and args.op != "write":
        _WS["digest"] = ws_digest(args.bucket)
    write, epoch, kshot = OPS[args.fmt]
    tmp = tempfile.mkdtemp(prefix=f"sl-{args.fmt}-", dir=args.tmp)
    os.environ["WARMSTART_CACHE_DIR"] = f"{tmp}/ws-cache"  # ours: an empty shard cache
    prof = None
    if os.environ.get("SL_PROFILE"):  # debugging aid: cProfile of the operation into this folder
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        if args.op == "write":
            seconds, info = write(images, labels, args.bucket, args.fmt, tmp)
            result = {"seconds": seconds, "info": info}
        elif args.op == "epoch":
            seconds, acc = epoch(args.bucket, args.fmt, tmp)
            ok = (acc.n, acc.lab, acc.pix) == checksum(images, labels)
            result = {"seconds": seconds, "n": acc.n, "ok": ok}
        else:
            idx = kshot_indices(labels, args.repeat)
            seconds, out = kshot(args.bucket, args.fmt, tmp, idx)
            result = {
                "seconds": seconds,
                "n": len(idx),
                "ok": bool(np.array_equal(out, images[idx])),
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if prof is not None:
            import pstats

            prof.disable()
            with open(Path(os.environ["SL_PROFILE"]) / f"{args.fmt}-{args.op}.txt", "w") as f:
                pstats.Stats(prof, stream=f).sort_stats("cumulative").print_stats(40)
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------- driver


CHECKSUM_VARS = ("AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION")


def run_child(
    py: str, fmt: str, op: str, n: int, bucket: str, repeat: int, tmp: str, plain: bool
) -> dict:
    cmd = [py, str(HERE), "worker", "--fmt", fmt, "--op", op, "--images", str(n)]
    cmd += ["--bucket", bucket, "--repeat", str(repeat), "--tmp", tmp]
    env = dict(os.environ)
    if plain:  # boto3's default checksums (no when_required settings) in the child
        env = {k: v for k, v in env.items() if k not in CHECKSUM_VARS}
        env["SL_BOTO_DEFAULTS"] = "1"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (proc.stdout + proc.stderr)[-3000:]
        return {"error": f"rc={proc.returncode}: {tail}"}
    return json.loads(lines[-1][7:])


def one_round(args, n: int, repeat: int, tmp: str, log, plain: bool = False) -> dict:
    from warmstart import storage

    bucket = f"bench-r{repeat}" if repeat >= 0 else "bench-warm"
    storage.ensure_bucket(bucket)
    order = (
        FORMATS[repeat % len(FORMATS) :] + FORMATS[: repeat % len(FORMATS)]
        if repeat >= 0
        else FORMATS
    )
    out: dict = {}
    for op in ("write", "epoch", "kshot"):
        for fmt in order:
            py = sys.executable if fmt == "warmstart" else args.lib_python
            r = run_child(py, fmt, op, n, bucket, repeat, tmp, plain)
            if op == "write" and "error" not in r:
                r["objects"], r["bytes"] = prefix_bytes(
                    bucket, "datasets/" if fmt == "warmstart" else fmt
                )
            out[(fmt, op)] = r
            log(
                f"  r={repeat} {op:5s} {fmt:10s} {r['error'] if 'error' in r else json.dumps(r)[:300]}"
            )
    delete_prefix(bucket)
    return out


def fmt_rate(xs: list[float]) -> str:
    if not xs:
        return "failed"
    med = statistics.median(xs)
    return f"{med:,.0f} ({min(xs):,.0f}–{max(xs):,.0f})" if len(xs) > 1 else f"{med:,.0f}"


def fmt_secs(xs: list[float]) -> str:
    if not xs:
        return "failed"
    med = statistics.median(xs)
    return f"{med:.2f} ({min(xs):.2f}–{max(xs):.2f})" if len(xs) > 1 else f"{med:.2f}"


def _per_repeat(results: list[dict], fmt: str, op: str, n: int) -> list[float]:
    """Rate (img/s) for write/epoch, seconds for kshot; NaN where a repeat failed."""
    out = []
    for r in results:
        got = r[(fmt, op)]
        out.append(
            float("nan")
            if "seconds" not in got
            else got["seconds"]
            if op == "kshot"
            else n / got["seconds"]
        )
    return out


def _ratio(results: list[dict], fmt: str, op: str, n: int) -> str:
    """Median over repeats of this format's figure / ours in the same repeat (side by side)."""
    mine, ours = _per_repeat(results, fmt, op, n), _per_repeat(results, "warmstart", op, n)
    rs = [a / b for a, b in zip(mine, ours, strict=False) if a == a and b == b]
    return f"{statistics.median(rs):.2f}×" if rs else "–"


def table(results: list[dict], n: int) -> str:
    rows = [
        "| format | write img/s (incl. upload) | epoch from S3 img/s | k-shot 100 images, cold, s "
        "| vs ours: write, epoch, k-shot time | stored MB (objects) | checks |",
        "|---|---|---|---|---|---|---|",
    ]
    for fmt in FORMATS:
        w, e, k = (
            [x for x in _per_repeat(results, fmt, op, n) if x == x]
            for op in ("write", "epoch", "kshot")
        )
        ok = all(
            r[(fmt, op)].get("ok", "error" not in r[(fmt, op)])
            for r in results
            for op in ("write", "epoch", "kshot")
        )
        ratios = ", ".join(_ratio(results, fmt, op, n) for op in ("write", "epoch", "kshot"))
        size = results[0][(fmt, "write")]
        stored = f"{size.get('bytes', 0) / 1e6:,.1f} ({size.get('objects', '?')})"
        rows.append(
            f"| {fmt} | {fmt_rate(w)} | {fmt_rate(e)} | {fmt_secs(k)} | {ratios if fmt != 'warmstart' else '1'} "
            f"| {stored} | {'ok' if ok else 'FAILED'} |"
        )
    return "\n".join(rows)


def main() -> None:
    global FORMATS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    w.add_argument("--fmt", choices=FORMATS, required=True)
    w.add_argument("--op", choices=("write", "epoch", "kshot"), required=True)
    w.add_argument("--images", type=int, required=True)
    w.add_argument("--bucket", required=True)
    w.add_argument("--repeat", type=int, default=0)
    w.add_argument("--tmp", required=True)
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup-images", type=int, default=3000)
    p.add_argument("--lib-python", default="/tmp/libvenv/bin/python")
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument(
        "--probe-checksums",
        action="store_true",
        help="instead of timing: one round of --warmup-images with boto3's default checksum settings",
    )
    args = p.parse_args()
    if args.cmd == "worker":
        worker(args)
        return
    from seaweed import seaweedfs

    FORMATS = tuple(f for f in FORMATS if f in args.formats.split(","))
    started = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - started:6.0f}s load {os.getloadavg()[0]:.1f}] {msg}", flush=True)

    loads = []
    with (
        tempfile.TemporaryDirectory(prefix="streaming-libs-") as tmp,
        seaweedfs(Path(tmp) / "home"),
    ):
        if args.probe_checksums:
            log(
                f"checksum probe: {args.warmup_images} images, children without {', '.join(CHECKSUM_VARS)}"
            )
            got = one_round(args, args.warmup_images, -1, tmp, log, plain=True)
            for (fmt, op), r in got.items():
                print(
                    f"{fmt:10s} {op:5s} {'ok' if r.get('ok', 'error' not in r) else 'FAILED: ' + r.get('error', 'wrong data')[-300:]}"
                )
            return
        log(f"warm-up round ({args.warmup_images} images, not reported)")
        one_round(args, args.warmup_images, -1, tmp, log)
        results = []
        for r in range(args.repeats):
            loads.append(os.getloadavg()[0])
            log(f"repeat {r + 1}/{args.repeats}")
            results.append(one_round(args, args.images, r, tmp, log))
            loads.append(os.getloadavg()[0])
    if not results:
        return
    print()
    print(
        f"{datetime.date.today()}, {args.images:,} images 3×64×64 uint8 "
        f"({args.images * int(np.prod(SHAPE)) / 1e6:.0f} MB), shards {SHARD_BYTES >> 20} MiB, "
        f"{args.repeats} repeats, median (min–max); load average {min(loads, default=0):.1f}–{max(loads, default=0):.1f}; "
        f"wall {time.time() - started:.0f} s"
    )
    print(table(results, args.images))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    main()
