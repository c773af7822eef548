"""`make demo`'s flow, old code against new, back to back on one machine (BENCHMARKS §6).

Each side gets its own checkout (`git archive REV`; the new side is this working tree), its own
stack (`WARMSTART_HOME` under --out, the default ports, stopped afterwards) and so its own
bucket: nothing is reused across sides. Each side runs `python -m warmstart.cli up`, then
`python -m warmstart.cli run --k-shot K` from its checkout (`python -m` puts the checkout first
on `sys.path`, and a `sitecustomize` remaps the editable install's `warmstart.tasks`, `.flows`,
`.models` and `.infra` to the checkout, so each side runs its own code), while a sampler reads
`/proc/stat` every second.

Per side it records: the flow's wall time (Prefect), the slot overhead and the training tasks'
timeline (`demo_overhead.py`'s measures), the `run` process tree's CPU seconds, the whole
machine's mean CPU utilisation over the run (all cores = 100%), and the verdict line. It writes
`<out>/results.json` (every run so far) and the timeline plot `<out>/timeline.png` (each side's
latest run, one panel per side: each training task as a bar in its lane, the machine's CPU
utilisation over it).

    python benchmarks/demo_side_by_side.py --old f5d3772 --k-shot 10 --rounds 1
    python benchmarks/demo_side_by_side.py --plot-only        # redraw from results.json

Run it on a quiet machine: the load average goes into the results, and the sides alternate
order between rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_overhead  # noqa: E402

CLEAN = ("PREFECT_", "MLFLOW_", "AWS_", "WARMSTART_")


class CpuSampler(threading.Thread):
    """The whole machine's busy share of all cores, from `/proc/stat`, once a second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int, int]] = []
        self.stop = threading.Event()

    @staticmethod
    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), *self.read()))
            self.stop.wait(1.0)
        self.samples.append((time.time(), *self.read()))

    def mean(self, t0: float, t1: float) -> float:
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return float("nan")
        (_, b0, a0), (_, b1, a1) = inside[0], inside[-1]
        return (b1 - b0) / max(a1 - a0, 1)

    def series(self) -> list[tuple[float, float]]:
        return [
            (t1, (b1 - b0) / max(a1 - a0, 1))
            for (_, b0, a0), (t1, b1, a1) in zip(self.samples, self.samples[1:], strict=False)
        ]


def checkout(rev: str, out: Path) -> Path:
    if rev == "WORKTREE":
        return ROOT
    dest = out / f"src-{rev}"
    if not dest.exists():
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


# The editable install maps `warmstart.tasks`, `.flows`, `.models`, `.infra` to this working
# tree's folders, whatever comes first on `sys.path`; an old checkout remaps them to its own.
REMAP = """import os, sys
src = os.environ.get("WARMSTART_BENCH_SRC")
for mod in list(sys.modules.values()):
    mapping = getattr(mod, "MAPPING", None)
    if src and "editable" in getattr(mod, "__name__", "") and isinstance(mapping, dict):
        for key, path in mapping.items():
            mapping[key] = path.replace(os.environ["WARMSTART_BENCH_ROOT"], src, 1)
"""


def side_env(home: Path, src: Path, out: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEAN)}
    env = {**env, "WARMSTART_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    if src == ROOT:
        return env
    hook = out / "remap"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(REMAP)
    return {
        **env,
        "PYTHONPATH": str(hook),
        "WARMSTART_BENCH_SRC": str(src),
        "WARMSTART_BENCH_ROOT": str(ROOT),
    }


def stack_env(src: Path, env: dict[str, str]) -> dict[str, str]:
    """The variables `warmstart env` prints for this side's stack (API URLs, credentials)."""
    text = subprocess.run(
        [sys.executable, "-m", "warmstart.cli", "env"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pairs = {}
    for line in text.splitlines():
        m = re.match(r"^(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            pairs[m.group(1)] = shlex.split(m.group(2))[0] if m.group(2) else ""
    return pairs


def tasks_of(api: str, flow_run: dict) -> list[dict]:
    import datetime as dt

    rows = demo_overhead.task_runs(api, flow_run)
    t0 = dt.datetime.fromisoformat(flow_run["start_time"])
    out = []
    for t in rows:
        if not (t["start_time"] and t["end_time"]):
            continue
        a = (dt.datetime.fromisoformat(t["start_time"]) - t0).total_seconds()
        b = (dt.datetime.fromisoformat(t["end_time"]) - t0).total_seconds()
        out.append({"name": t["name"], "gpu": "gpu" in t["tags"], "start": a, "end": b})
    return sorted(out, key=lambda r: r["start"])


def measure_side(name: str, rev: str, k: int, out: Path, tag: str) -> dict:
    src = checkout(rev, out)
    home = out / f"home-{tag}"
    env = side_env(home, src, out)
    cli = [sys.executable, "-m", "warmstart.cli"]
    subprocess.run([*cli, "down"], cwd=src, env=env, capture_output=True)
    t_up = time.time()
    subprocess.run([*cli, "up"], cwd=src, env=env, check=True, capture_output=True)
    up_s = time.time() - t_up
    sampler = CpuSampler()
    sampler.start()
    load0 = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    log = out / f"run-{tag}.log"
    with log.open("w") as fh:
        rc = subprocess.run(
            [*cli, "run", "--k-shot", str(k)], cwd=src, env=env, stdout=fh, stderr=subprocess.STDOUT
        ).returncode
    t1 = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    load1 = os.getloadavg()
    sampler.stop.set()
    sampler.join()
    text = log.read_text(errors="replace")
    verdict = next(
        (ln.strip() for ln in text.splitlines() if re.match(r"^\s*(not )?promoted", ln)), ""
    )
    summary = next((ln.strip() for ln in text.splitlines() if "of stage time" in ln), "")
    saved = dict(os.environ)
    try:
        os.environ.update(stack_env(src, env))
        api = os.environ["PREFECT_API_URL"]
        flow_run = demo_overhead.latest_run(api)
        m = demo_overhead.measure(api, flow_run)
        sl = demo_overhead.slots(api, flow_run)
        tasks = tasks_of(api, flow_run)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        subprocess.run([*cli, "down"], cwd=src, env=env, capture_output=True)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cores = os.cpu_count() or 1
    return {
        "side": name,
        "rev": rev,
        "tag": tag,
        "k_shot": k,
        "rc": rc,
        "up_s": up_s,
        "run_wall_s": t1 - t0,
        "flow_wall_s": m["wall_s"],
        "task_runs": m["tasks"],
        "held_s": sl["held_s"],
        "trained_s": sl["trained_s"],
        "slot_overhead": 1 - sl["trained_s"] / max(sl["held_s"], 1e-9),
        "timeline": sl["timeline"],
        "run_cpu_s": cpu,
        "run_cores_busy": cpu / (t1 - t0),
        "machine_util": sampler.mean(t0, t1),
        "cores": cores,
        "load_before": load0,
        "load_after": load1,
        "verdict": verdict,
        "summary": summary,
        "tasks": tasks,
        "cpu_series": [(t - t0, u) for t, u in sampler.series() if t0 <= t <= t1],
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(11, 2.6 * len(results)), squeeze=False)
    span = max(r["run_wall_s"] for r in results)
    for ax, r in zip(axes[:, 0], results, strict=True):
        lanes: list[float] = []  # each lane's last end: a training task takes the first free lane
        for t in (t for t in r["tasks"] if t["gpu"]):
            lane = next((i for i, end in enumerate(lanes) if end <= t["start"] + 1e-6), None)
            if lane is None:
                lanes.append(0.0)
                lane = len(lanes) - 1
            lanes[lane] = t["end"]
            ax.barh(lane, t["end"] - t["start"], left=t["start"], height=0.8, color="tab:blue")
        others = [t for t in r["tasks"] if not t["gpu"]]
        for t in others:
            ax.barh(-1, max(t["end"] - t["start"], 0.3), left=t["start"], height=0.6, color="0.6")
        ax.set_yticks(
            [-1, *range(len(lanes))], ["other", *[f"lane {i}" for i in range(len(lanes))]]
        )
        ax.set_xlim(0, span)
        ax.set_title(
            f"{r['side']} ({r['rev']}): flow {r['flow_wall_s']:.0f} s, machine CPU "
            f"{100 * r['machine_util']:.0f}% of {r['cores']} cores, {r['verdict'][:60]}",
            fontsize=9,
        )
        cpu = ax.twinx()
        xs = [t for t, _ in r["cpu_series"]]
        cpu.plot(xs, [100 * u for _, u in r["cpu_series"]], color="tab:red", lw=0.8)
        cpu.set_ylim(0, 105)
        cpu.set_ylabel("CPU % (all cores)", color="tab:red", fontsize=8)
    axes[-1, 0].set_xlabel("seconds since the run started (bars: training tasks holding a slot)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results: list[dict]) -> str:
    head = (
        "| side | rev | flow wall s | task runs | slot held s | trained s | slot overhead | "
        "run CPU s | machine CPU | load before | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {r['side']} | {r['rev']} | {r['flow_wall_s']:.1f} | {r['task_runs']} | "
        f"{r['held_s']:.0f} | {r['trained_s']:.0f} | {100 * r['slot_overhead']:.1f}% | "
        f"{r['run_cpu_s']:.0f} | {100 * r['machine_util']:.0f}% | {r['load_before'][0]:.2f} | "
        f"{r['verdict']} |"
        for r in results
    ]
    return "\n".join([head, *rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="f5d3772", help="the old revision (git archive)")
    ap.add_argument("--k-shot", type=int, default=10, help="one k for both sides")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "test-output" / "demo_side_by_side")
    ap.add_argument("--sides", default="old,new", help="which sides, in the first round's order")
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "results.json"
    results = json.loads(store.read_text()) if store.exists() else []
    if not args.plot_only:
        revs = {"old": args.old, "new": "WORKTREE"}
        sides = [(name, revs[name]) for name in args.sides.split(",")]
        for i in range(args.rounds):
            for name, rev in sides if i % 2 == 0 else sides[::-1]:
                tag = f"{name}-{len(results)}"
                print(f"[{time.strftime('%H:%M:%S')}] {tag}: {rev}", flush=True)
                results.append(measure_side(name, rev, args.k_shot, args.out, tag))
                store.write_text(json.dumps(results, indent=1))
                print(table(results[-1:]), flush=True)
    latest = {r["side"]: r for r in results}  # the plot: each side's latest run, old first
    plot(sorted(latest.values(), key=lambda r: r["side"] != "old"), args.out / "timeline.png")
    print(table(results))


if __name__ == "__main__":
    main()
