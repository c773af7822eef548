"""Wall time, per-stage times and orchestration overhead of a transfer-pipeline flow run.

overhead = (flow wall − Σ task compute) / flow wall, where task compute is each task run's time in
the Running state as recorded by the Prefect server (waiting for the `gpu` slot is not compute).
With stages training at once (CPU slots, issue 25) that sum can exceed the wall, so it also
prints the slot overhead: over the training tasks (tag `gpu`), the seconds they held a slot
(Running) less the seconds their stages trained (the sum of each stage run's per-epoch metric
`seconds`: the epochs' training and validation, without checkpoints or logging), over the
seconds held; and a timeline: training tasks running per
tenth of the flow's wall time.

    eval $(warmstart env)
    python benchmarks/demo_overhead.py                 # the latest transfer-pipeline run
    python benchmarks/demo_overhead.py --flow-run <id>
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
from collections import defaultdict

import httpx


def auth() -> tuple[str, str] | None:
    """The Prefect API's basic credentials (PREFECT_API_AUTH_STRING, `user:password`)."""
    raw = os.environ.get("PREFECT_API_AUTH_STRING", "")
    return tuple(raw.split(":", 1)) if ":" in raw else None  # type: ignore[return-value]


def latest_run(api: str) -> dict:
    flows = httpx.post(
        auth=auth(),
        url=f"{api}/flows/filter",
        json={"flows": {"name": {"any_": ["transfer-pipeline"]}}},
    ).json()
    if not flows:
        raise SystemExit("no transfer-pipeline flow on this server: run `make demo` first")
    runs = httpx.post(
        auth=auth(),
        url=f"{api}/flow_runs/filter",
        json={
            "flows": {"id": {"any_": [flows[0]["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
            "sort": "START_TIME_DESC",
            "limit": 1,
        },
    ).json()
    if not runs:
        raise SystemExit("no completed transfer-pipeline run yet")
    return runs[0]


def task_runs(api: str, flow_run: dict) -> list[dict]:
    """The flow run's task runs, as the Prefect server records them."""
    return httpx.post(
        auth=auth(),
        url=f"{api}/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [flow_run["id"]]}}, "limit": 200},
    ).json()


def measure(api: str, flow_run: dict) -> dict:
    tasks = task_runs(api, flow_run)
    stages: dict[str, float] = defaultdict(float)
    for t in tasks:
        stage = (
            re.sub(r"\[.*$", "", t["name"]).rsplit("-", 1)[0]
            if "[" not in t["name"]
            else t["name"].split("[")[0]
        )
        stages[stage] += t["total_run_time"]
    compute = sum(t["total_run_time"] for t in tasks)
    wall = flow_run["total_run_time"]
    return {
        "flow_run": flow_run["id"],
        "name": flow_run["name"],
        "wall_s": wall,
        "task_compute_s": compute,
        "overhead": (wall - compute) / wall if wall else float("nan"),
        "tasks": len(tasks),
        "stages": dict(sorted(stages.items(), key=lambda kv: -kv[1])),
    }


def stage_seconds(flow_run_id: str) -> list[float]:
    """Each training stage's epoch seconds (metric ``seconds`` at steps 1..E; step 0 holds the
    whole fit's, checkpoints and reporting included)."""
    from mlflow.tracking import MlflowClient  # deferred: only this measure needs MLflow

    client = MlflowClient()
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`warmstart.flow_run_id` = '{flow_run_id}'",
        max_results=1000,
    )
    out = []
    for run in runs:
        if "warmstart.stage" not in run.data.tags:
            continue
        steps = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "seconds")}
        out.append(sum(v for step, v in steps.items() if step >= 1))
    return out


def slots(api: str, flow_run: dict) -> dict:
    """Slot overhead and a timeline of the training tasks (tag `gpu`)."""
    tasks = task_runs(api, flow_run)
    gpu = [t for t in tasks if "gpu" in t["tags"] and t["start_time"] and t["end_time"]]
    held = sum(t["total_run_time"] for t in gpu)
    trained = sum(stage_seconds(flow_run["id"]))
    t0 = min(dt.datetime.fromisoformat(t["start_time"]) for t in tasks if t["start_time"])
    wall = flow_run["total_run_time"]
    bins = [0.0] * 10
    for t in gpu:
        a = (dt.datetime.fromisoformat(t["start_time"]) - t0).total_seconds()
        b = (dt.datetime.fromisoformat(t["end_time"]) - t0).total_seconds()
        for i in range(10):
            lo, hi = i * wall / 10, (i + 1) * wall / 10
            bins[i] += max(0.0, min(b, hi) - max(a, lo)) / (wall / 10)
    return {"held_s": held, "trained_s": trained, "training_tasks": len(gpu), "timeline": bins}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flow-run", help="flow run id (default: the latest completed run)")
    args = ap.parse_args()
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        raise SystemExit("PREFECT_API_URL is not set: eval $(warmstart env)")
    run = (
        httpx.get(auth=auth(), url=f"{api}/flow_runs/{args.flow_run}").json()
        if args.flow_run
        else latest_run(api)
    )
    m = measure(api, run)
    print(f"flow run {m['name']} ({m['flow_run']}): {m['tasks']} task runs")
    print(
        f"flow wall {m['wall_s']:.1f} s, Σ task compute {m['task_compute_s']:.1f} s, "
        f"orchestration overhead {100 * m['overhead']:.1f}% (goal ≤ 10%)"
    )
    print("| stage | Σ seconds |\n|---|---|")
    for stage, secs in m["stages"].items():
        print(f"| {stage} | {secs:.1f} |")
    sl = slots(api, run)
    print(
        f"training tasks {sl['training_tasks']}: held a slot {sl['held_s']:.1f} s, their stages "
        f"trained {sl['trained_s']:.1f} s: slot overhead "
        f"{100 * (1 - sl['trained_s'] / max(sl['held_s'], 1e-9)):.1f}%"
    )
    print(
        "training tasks running, per tenth of the flow: "
        + " ".join(f"{b:.1f}" for b in sl["timeline"])
    )


if __name__ == "__main__":
    main()
