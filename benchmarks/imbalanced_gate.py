"""The imbalanced-target scenario (issue 26): gating on accuracy vs balanced accuracy, side by side.

The target is UCI digits (8×8, the full 1,797 images) with classes 7, 8 and 9 cut to 30 images
each (``tests/flows/configs.imbalanced_digits``), so validation and test hold about a sixth as
many of them as of each other class (test: 6 vs ~36 per class, a ratio above
``metric.IMBALANCE_RATIO``); the source is MNIST-5k (``crop=content``), every digit
(``--source mnist``) or digits 0-6 only (``--source mnist-0-6``: the rare classes unseen in
pretraining). The transfer pipeline
runs once per k with ``--metric auto`` (which picks balanced accuracy here), and from each
run's ``predictions.parquet`` ``recompute_verdict`` gives the gate's interval under both
metrics on the same confirmation seeds and test images, so the two gates are compared on one
run, not two. The script also prints the per-class accuracies of the gate's two arms (mean over
the confirmation seeds) and the classes the verdict names.

It starts a private SeaweedFS + MLflow + Prefect on free ports in a temporary folder
(``protocol_rerun.start_stack``) and stops them at the end. Each run's record goes to --out as
JSON; ``--table-only`` reprints the tables from those files.

    python benchmarks/imbalanced_gate.py --k 1 5
    python benchmarks/imbalanced_gate.py --source mnist-0-6 --k 5
    python benchmarks/imbalanced_gate.py --table-only
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_line  # noqa: E402
from protocol_rerun import start_stack  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("accuracy", "balanced_accuracy")
# The source: every MNIST digit, or digits 0-6 only (the cut classes unseen in pretraining,
# where transfer is likeliest to serve them worse than scratch).
SOURCES = {
    "mnist": "builtin:mnist-5k?crop=content",
    "mnist-0-6": "builtin:mnist-5k?crop=content&classes=0-6",
}
PRESET = dict(
    strategies=["supervised"],
    transfer_modes=["linear_probe", "finetune"],
    seeds=2,
    confirm_seeds=5,
    metric="auto",
)


def gates(summary: dict, out: Path) -> dict:
    """Both metrics' intervals and the per-class accuracies, from the run's predictions."""
    import pandas as pd
    from mlflow import MlflowClient

    from warmstart.promotion import recompute_verdict

    run_id = summary["mlflow_run_url"].split("/runs/")[1].split("?")[0]
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        path = MlflowClient().download_artifacts(run_id, "predictions.parquet", tmp)
        frame = pd.read_parquet(path)
        result = {m: recompute_verdict(path, metric=m) for m in METRICS}
    rows = frame[frame["gate"] != ""]
    per_class = rows.groupby(["gate", "label"])["correct"].mean().unstack(0)
    result["per_class"] = {
        int(c): {"candidate": float(r["candidate"]), "scratch": float(r["scratch"])}
        for c, r in per_class.iterrows()
    }
    result["test_images"] = (
        rows[(rows["gate"] == "scratch") & (rows["seed"] == rows["seed"].min())]["label"]
        .value_counts()
        .sort_index()
        .astype(int)
        .to_dict()
    )
    result["recorded_metric"] = sorted(set(rows["metric"]) - {""})
    return result


def run(scenario: str, ks: list[int], out: Path, folder: Path) -> None:
    from warmstart import logsafe
    from warmstart.flows.pipeline import transfer_pipeline
    from warmstart.params import PipelineParams

    sys.path.insert(0, str(ROOT))
    from tests.flows.configs import imbalanced_digits

    logsafe.install()
    target = imbalanced_digits(folder)
    for k in ks:
        params = PipelineParams(**PRESET, source=SOURCES[scenario], target=target, k_shot=k)
        t0 = time.time()
        summary = transfer_pipeline(params)
        wall = time.time() - t0
        record = {
            "scenario": scenario,
            "k": k,
            "wall_s": wall,
            "load_end": load_average(),
            "summary": summary,
        }
        record["params"] = params.model_dump()
        record["gates"] = gates(summary, out)
        (out / f"imbalanced-{scenario}-k{k}.json").write_text(
            json.dumps(record, default=str, indent=1)
        )
        print(
            f"k={k}: {summary['verdict']} in {wall:.0f} s; load {load_average()}", file=sys.stderr
        )


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _word(d: dict, margin: float) -> str:
    return "promoted" if d["ci_low"] > margin else "not promoted"


def table(out: Path) -> None:
    from warmstart.promotion.classes import CLASS_DROP

    recs = [json.loads(p.read_text()) for p in out.glob("imbalanced-*.json")]
    for rec in recs:  # records written before --source name no scenario: every MNIST digit
        rec.setdefault("scenario", "mnist")
    recs.sort(key=lambda r: (r["scenario"], r["k"]))
    print(
        "| source | k | chosen arm | test images per class | metric auto picked | accuracy gate: Δ [95% CI] "
        "| verdict | balanced-accuracy gate: Δ [95% CI] | verdict | the run's verdict | wall s |"
    )
    print("|" + "---|" * 11)
    for rec in recs:
        g, s, margin = rec["gates"], rec["summary"], rec["params"]["margin"]
        a, b = g["accuracy"], g["balanced_accuracy"]
        counts = ", ".join(f"{c}: {n}" for c, n in g["test_images"].items())
        print(
            f"| `{rec['params']['source']}` | {rec['k']} | {a['arm']} | {counts} | {', '.join(g['recorded_metric'])} | "
            f"{_pts(a['mean_diff'])} [{_pts(a['ci_low'])}, {_pts(a['ci_high'])}] | "
            f"{_word(a, margin)} | {_pts(b['mean_diff'])} [{_pts(b['ci_low'])}, "
            f"{_pts(b['ci_high'])}] | {_word(b, margin)} | {s['verdict']} ({s['rule']}) | "
            f"{rec['wall_s']:.0f} |"
        )
    print("\nPer class, mean over the 5 confirmation seeds (candidate vs scratch, %):\n")
    for rec in recs:
        pc, counts = rec["gates"]["per_class"], rec["gates"]["test_images"]
        cells = ", ".join(
            f"{c}: {100 * v['candidate']:.0f} vs {100 * v['scratch']:.0f}" for c, v in pc.items()
        )
        print(f"- {rec['scenario']}, k={rec['k']}: {cells}")
        named = [  # the verdict's rule (promotion.classes.class_drops) on the same means
            f"class {c} ({100 * (v['candidate'] - v['scratch']):+.0f} points, {counts[c]} test images)"
            for c, v in pc.items()
            if v["scratch"] - v["candidate"] > CLASS_DROP
        ]
        print(
            f"  more than {100 * CLASS_DROP:.0f} points below scratch: {'; '.join(named) or 'none'}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--k", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--source", choices=sorted(SOURCES), default="mnist")
    ap.add_argument("--out", type=Path, default=Path("test-output/imbalanced_gate"))
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        print(machine_line(), file=sys.stderr)
        # SIGTERM ends like Ctrl-C, so the finally below stops the private stack.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        home = Path(tempfile.mkdtemp(prefix="ws-imbalanced-"))
        cfg = start_stack(home)
        try:
            run(args.source, args.k, args.out, home / "target")
        finally:
            from prefect.logging.handlers import APILogWorker

            from warmstart.infra import stack as stack_mod

            APILogWorker.drain_all(timeout=5)
            stack_mod.down(cfg, echo=lambda s: print(s, file=sys.stderr))
            shutil.rmtree(home, ignore_errors=True)
    print(machine_line())
    table(args.out)


if __name__ == "__main__":
    main()
