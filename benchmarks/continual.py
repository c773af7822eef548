"""Continual transfer (issue 12): a registered model as the next task's source.

Task A: a pipeline run trains and registers a model of shape classes 0–3 (16×16 RGB; k=240
labelled images per class, 16 fine-tuning epochs — the budget §3's supervised pretraining had;
its own source is 500 noise images for one epoch, a negligible start). Task B: the
`label-efficiency` flow transfers that registered version to shape classes 4–7 with the
`mlflow:models:/<name>/<version>` source at k = 1, 5, 10 over 3 seeds, with §3's transfer modes
and budgets. Side by side in the same run: §3's dataset-source route (supervised pretraining on
classes 0–3), whose scratch and control stages are the same stages (reused).

Runs against the running stack (`warmstart up`, `eval $(warmstart env)`) and prints Markdown:

    python benchmarks/continual.py --k 1,5,10 --seeds 3
"""

from __future__ import annotations

import argparse
import time

from _common import machine_line  # this script's folder

SHAPES = "builtin:shapes?n=3000&num_classes=8&size=16x16"
TASK_A = f"{SHAPES}&classes=0-3"
TASK_B = f"{SHAPES}&classes=4-7"
A_SOURCE = "builtin:noise?n=500&num_classes=4&size=16x16&channels=3"
MODES = ["finetune", "linear_probe"]  # §3's preset


def train_task_a(pipeline, Params) -> dict:
    """Task A trained and registered (kept as a candidate whatever the gate says)."""
    params = Params(
        source=A_SOURCE,
        target=TASK_A,
        k_shot=240,
        strategies=["supervised"],
        transfer_modes=["finetune"],
        seeds=1,
        pretrain_epochs=1,
        finetune_epochs=16,
        keep_candidates=True,
        # the registered model is task A's result; its confirmation seeds are not measured here
        **({"confirm_seeds": 0} if "confirm_seeds" in Params.model_fields else {}),
    )
    return pipeline(params)


def registered_by(summary: dict) -> tuple[str, str]:
    """(model name, version) a pipeline run registered or reused (identical weights keep their
    first version, whose tags name the first run), read from the registry."""
    from warmstart.tracking.client import client

    c = client()
    found = c.search_model_versions(filter_string=f"tags.flow_run_id = '{summary['flow_run_id']}'")
    if not found and summary.get("version"):
        like = f"name LIKE '{summary['model_name']}-%'"
        found = [
            v for v in c.search_model_versions(like) if str(v.version) == str(summary["version"])
        ]
    if not found:
        raise SystemExit(f"flow run {summary['flow_run_id']} registered no model version")
    return found[0].name, str(found[0].version)


def comparison(rows_m: list[dict], rows_d: list[dict], modes: list[str]) -> list[str]:
    """Per k: the mlflow-source arms beside the dataset-source arms and scratch."""
    cell = {(r["arm"], r["k"]): r for r in rows_m + rows_d}

    def fmt(arm: str, k: int) -> str:
        r = cell.get((arm, k))
        if r is None:
            return "—"
        return f"{100 * r['test_acc']:.1f} [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"

    out = [
        "| k | mode | mlflow: source | dataset source (supervised) | scratch | mlflow − scratch |",
        "|---|---|---|---|---|---|",
    ]
    for k in sorted({r["k"] for r in rows_m}):
        for mode in modes:
            m, s = cell.get((f"mlflow/{mode}", k)), cell.get(("scratch", k))
            delta = f"{100 * (m['test_acc'] - s['test_acc']):+.1f}" if m and s else "—"
            out.append(
                f"| {k} | {mode} | {fmt(f'mlflow/{mode}', k)} | "
                f"{fmt(f'supervised/{mode}', k)} | {fmt('scratch', k)} | {delta} |"
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", default="1,5,10", help="comma list of k values")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES), help="transfer modes of task B")
    ap.add_argument("--no-dataset-route", action="store_true", help="mlflow: source only")
    args = ap.parse_args()

    from warmstart.settings import load_env

    load_env()  # before Prefect is imported: it reads PREFECT_API_URL once, at import
    from warmstart import logsafe
    from warmstart.flows.label_efficiency import label_efficiency
    from warmstart.flows.pipeline import transfer_pipeline
    from warmstart.params import PipelineParams, SweepParams

    logsafe.install()
    ks = [int(k) for k in args.k.split(",")]
    t0 = time.time()
    a = train_task_a(transfer_pipeline, PipelineParams)
    t_a = time.time() - t0
    name, version = registered_by(a)
    source = f"mlflow:models:/{name}/{version}"
    modes = args.modes.split(",")
    common = dict(target=TASK_B, transfer_modes=modes, seeds=args.seeds, k_values=ks)
    t1 = time.time()
    m = label_efficiency(SweepParams(source=source, **common))
    t_m = time.time() - t1
    print(f"mlflow: source ({t_m:.0f} s):\n\n{m['markdown']}\n", flush=True)
    t2 = time.time()
    empty = {"rows": [], "markdown": "(not run)", "trained": 0, "reused": 0}
    d = (
        empty
        if args.no_dataset_route
        else label_efficiency(
            SweepParams(source=f"{SHAPES}&classes=0-3", strategies=["supervised"], **common)
        )
    )
    t_d = time.time() - t2
    print(f"\n### continual transfer: {TASK_A} → {TASK_B}\n")
    print(f"{machine_line()} (at the end).\n")
    flags = f" --modes {args.modes}" + (" --no-dataset-route" if args.no_dataset_route else "")
    print(f"Command: `python benchmarks/continual.py --k {args.k} --seeds {args.seeds}{flags}`\n")
    print(
        f"Task A: {name} version {version} ({a['verdict']}, served test "
        f"accuracy {100 * a.get('served_test_accuracy', float('nan')):.1f} %), {t_a:.0f} s.  \n"
        f"Task B with `{source}`: {t_m:.0f} s, {m['trained']} stages trained, "
        f"{m['reused']} reused.  \nDataset route: {t_d:.0f} s, {d['trained']} trained, "
        f"{d['reused']} reused.\n"
    )
    print("Test accuracy %, mean [95% CI] over seeds × test images:\n")
    print("\n".join(comparison(m["rows"], d["rows"], modes)))
    print("\nmlflow: source, every arm:\n")
    print(m["markdown"])
    print("\ndataset source, every arm:\n")
    print(d["markdown"])


if __name__ == "__main__":
    main()
