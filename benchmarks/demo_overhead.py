"""Wall time, per-stage times and orchestration overhead of a transfer-pipeline flow run.

overhead = (flow wall − Σ task compute) / flow wall, where task compute is each task run's time in
the Running state as recorded by the Prefect server (waiting for the `gpu` slot is not compute).

    eval $(warmstart env)
    python benchmarks/demo_overhead.py                 # the latest transfer-pipeline run
    python benchmarks/demo_overhead.py --flow-run <id>
"""

from __future__ import annotations

import argparse
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


def measure(api: str, flow_run: dict) -> dict:
    tasks = httpx.post(
        auth=auth(),
        url=f"{api}/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [flow_run["id"]]}}, "limit": 200},
    ).json()
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


if __name__ == "__main__":
    main()
