"""The gate's new protocol on BENCHMARKS §1–3 (issues 14, 21): old and new verdicts side by side.

The `label-efficiency` flow (which produced §1–3) trains every arm at every k but never runs the
gate, so this script runs the `transfer-pipeline` flow once per k on the same source/target
specs and image sizes, with the default protocol (2 selection seeds, scratch's lr × wd grid,
5 confirmation seeds 1000–1004, seed-level paired t interval). From each run it reads both:

- **old verdict**, recomputed on the same runs: the transfer arm with the best mean validation
  accuracy over the selection seeds, its Δ vs the default scratch (lr 3e-3, wd 5e-4: the only
  scratch the old gate had) on test with the paired bootstrap over seeds × test examples (the
  selection rows of the pipeline's table), promoted if the CI's lower end is above the margin;
- **new verdict**: the gate's own (chosen arm, Δ on the confirmation seeds with the t interval,
  configurations compared on each side, labels used);
- **interval** (issue 21): from the run's ``predictions.parquet``, ``recompute_verdict`` with the
  seed-level t interval (the gate's until issue 21) and the two-way interval over seeds and test
  images (the gate's since), side by side, and whether the verdict flips.

It starts a private SeaweedFS + MLflow + Prefect on free ports in a temporary folder and stops
them at the end; nothing else is touched. Each run's summary is saved as JSON under --out, and
`--table-only` reprints the table from those files.

    python benchmarks/protocol_rerun.py mnist-uci            # §1 (8×8)
    python benchmarks/protocol_rerun.py shapes split-mnist   # §3, §2 (16×16)
    python benchmarks/protocol_rerun.py --table-only mnist-uci shapes split-mnist
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_line  # noqa: E402
from label_efficiency import PRESETS  # noqa: E402  (the §1–3 source/target specs)

ROOT = Path(__file__).resolve().parent.parent
# BENCHMARKS section of each scenario, and the old sweep's wall time over k = 1, 5, 10
# (3 seeds; from that section's text).
SECTIONS = {"mnist-uci": ("1", 368.0), "split-mnist": ("2", 415.0), "shapes": ("3", 318.0)}


def old_table(section: str) -> dict[str, dict[int, float]]:
    """The 2026-11-27 accuracy table of BENCHMARKS §<section>: arm -> k -> mean test acc %."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    m = re.search(rf"^## {section}\. .*?(?=^## )", text, flags=re.S | re.M)
    out: dict[str, dict[int, float]] = {}
    if not m:
        return out
    ks: list[int] = []
    for line in m.group(0).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "arm" and len(cells) > 1:
            ks = [int(c.split("=")[1]) for c in cells[1:]]
        elif ks and len(cells) == len(ks) + 1 and not cells[0].startswith("-"):
            try:
                out[cells[0]] = {k: float(c.split()[0]) for k, c in zip(ks, cells[1:], strict=True)}
            except ValueError:
                continue
    return out


def start_stack(home: Path):
    """A private stack on free ports; os.environ points every client at it (before Prefect and
    MLflow are imported)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import stack_config  # free ports, the same way the test stack picks them

    from warmstart.infra import stack as stack_mod

    cfg = stack_config(home)
    stack_mod.up(cfg, echo=lambda s: print(s, file=sys.stderr))
    os.environ.update(stack_mod.client_env(cfg))
    os.environ["WARMSTART_HOME"] = str(home)
    os.environ["PREFECT_HOME"] = str(home / "prefect-client")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return cfg


def run_scenario(name: str, ks: list[int], args: argparse.Namespace, out: Path) -> None:
    from warmstart import logsafe
    from warmstart.flows.pipeline import transfer_pipeline
    from warmstart.params import PipelineParams

    logsafe.install()
    preset = {k: v for k, v in PRESETS[name].items() if k != "k_values"}
    for k in ks:
        params = PipelineParams(
            **preset,
            k_shot=k,
            seeds=args.seeds,
            confirm_seeds=args.confirm_seeds,
            register_model=True,
        )
        t0 = time.time()
        summary = transfer_pipeline(params)
        wall = time.time() - t0
        load = load_average().split()
        record = {"scenario": name, "k": k, "wall_s": wall, "load_end": load, "summary": summary}
        record["params"] = params.model_dump()
        record["intervals"] = intervals(summary, out)
        (out / f"{name}-k{k}.json").write_text(json.dumps(record, default=str, indent=1))
        print(
            f"{name} k={k}: {summary['verdict']} ({summary['candidate']}) in {wall:.0f} s, "
            f"{summary['trained']} trained; load {' '.join(load)}",
            file=sys.stderr,
        )


INTERVALS = ("seed-t", "two-way")


def intervals(summary: dict, out: Path) -> dict[str, dict]:
    """Both intervals recomputed from the run's downloaded predictions (the gate's own code)."""
    from mlflow import MlflowClient

    from warmstart.promotion import recompute_verdict

    run_id = summary["mlflow_run_url"].split("/runs/")[1].split("?")[0]
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        path = MlflowClient().download_artifacts(run_id, "predictions.parquet", tmp)
        return {name: recompute_verdict(path, interval=name) for name in INTERVALS}


def interval_table(recs: list[dict]) -> None:
    """Seed-t vs two-way on the same confirmation seeds, and the flips."""
    print(
        "\n| k | chosen arm | Δ (confirm seeds) | seed-t 95% CI | seed-t verdict | "
        "two-way 95% CI (df) | two-way verdict (the gate's) | flip |"
    )
    print("|" + "---|" * 8)
    for rec in recs:
        iv, margin = rec.get("intervals"), rec["params"]["margin"]
        if not iv:
            print(f"| {rec['k']} | {rec['summary']['candidate']} | — (run saved before issue 21) |")
            continue
        old, new = iv["seed-t"], iv["two-way"]
        ok = {n: d["ci_low"] > margin for n, d in iv.items()}
        flip = "no" if ok["seed-t"] == ok["two-way"] else "**yes**"
        print(
            f"| {rec['k']} | {new['arm']} | {_pts(new['mean_diff'])} | "
            f"{_ci(old['ci_low'], old['ci_high'])} | {_word(ok['seed-t'])} | "
            f"{_ci(new['ci_low'], new['ci_high'])} ({new['df']:g}) | {_word(ok['two-way'])} | "
            f"{flip} |"
        )


def _word(promoted: bool) -> str:
    return "promoted" if promoted else "not promoted"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _ci(lo: float, hi: float) -> str:
    return f"[{_pts(lo)}, {_pts(hi)}]"


def _row(rec: dict, old: dict[str, dict[int, float]], margin: float) -> str:
    s, k = rec["summary"], rec["k"]
    rows = {r["arm"]: r for r in s["table"]}
    proto = s["protocol"]
    arm = s["candidate"]  # selection is the same rule in both protocols: best mean val acc
    sel = rows[arm]
    old_ok = sel["delta_ci"][0] > margin
    conf, scr = rows.get(f"{arm} (confirm)"), rows.get("scratch (confirm)")
    new_delta = (
        f"{_pts(conf['delta_vs_scratch'])} {_ci(*conf['delta_ci'])}"
        if conf
        else "— (not confirmed)"
    )
    sc = proto["scratch_config"]
    lb = proto["labels"]
    lab = f"{lb['per_model']} per model ({lb['train']} train + {lb['val']} val); {lb['distinct']} distinct"
    verdict = (
        s["verdict"] if s["rule"] in (s["verdict"], "promoted") else f"{s['verdict']} ({s['rule']})"
    )
    o = old.get(arm, {}).get(k)
    o_s = old.get("scratch", {}).get(k)
    then = f"{o:.1f} vs {o_s:.1f} ({o - o_s:+.1f})" if o is not None and o_s is not None else "—"
    return (
        f"| {k} | {arm} | {sel['val_acc'] * 100:.1f} | {100 * sel['test_acc']:.1f} vs "
        f"{100 * rows['scratch']['test_acc']:.1f} | {_pts(sel['delta_vs_scratch'])} "
        f"{_ci(*sel['delta_ci'])} | {'promoted' if old_ok else 'not promoted'} | {then} | "
        f"{100 * conf['test_acc']:.1f} vs {100 * scr['test_acc']:.1f} | {new_delta} | "
        f"**{verdict}** | {proto['transfer_configs']} vs "
        f"{proto['scratch_configs']} (lr {sc['lr']:g}, wd {sc['weight_decay']:g}) | {lab} |"
        if conf and scr
        else f"| {k} | {arm} | … | | | | {then} | | {new_delta} | **{verdict}** | | {lab} |"
    )


def _part(arm: str) -> str:
    if arm.endswith("(confirm)"):
        return "confirm"
    if arm == "scratch" or arm.startswith("control/"):
        return "old"  # the default scratch and the controls: what the old gate trained too
    return "grid" if arm.startswith("scratch/") else "transfer"


def cost_line(rec: dict) -> str:
    """Where one run's training seconds went (side by side in one run, so one load): the
    selection's transfer arms, the default scratch and controls, scratch's extra grid points,
    the confirmation; and what the old protocol (3 seeds, one scratch) would have trained."""
    parts = dict.fromkeys(("transfer", "old", "grid", "confirm"), 0.0)
    for row in rec["summary"]["table"]:
        parts[_part(row["arm"])] += row["finetune_seconds"]
    seeds = rec["params"]["seeds"]
    old = 3 / seeds * (parts["transfer"] + parts["old"])
    new = sum(parts.values())
    return (
        f"k={rec['k']}: fine-tune s {new:.0f} (transfer {parts['transfer']:.0f}, scratch default "
        f"+ controls {parts['old']:.0f}, scratch's other grid points {parts['grid']:.0f}, "
        f"confirmation {parts['confirm']:.0f}) vs old protocol ≈ {old:.0f} (3 seeds × the same "
        f"arms, one scratch: ratio {new / old:.2f}); flow wall {rec['wall_s']:.0f} s, "
        f"{rec['summary']['trained']} stages trained, {rec['summary']['reused']} reused"
    )


def table(names: list[str], out: Path) -> None:
    for name in names:
        section, old_wall = SECTIONS.get(name, ("?", float("nan")))
        recs = sorted(
            (json.loads(p.read_text()) for p in out.glob(f"{name}-k*.json")), key=lambda r: r["k"]
        )
        if not recs:
            print(f"\n_{name}: no saved runs in {out}_\n")
            continue
        p = recs[0]["params"]
        print(f"\n### §{section} {name}: `{p['source']}` → `{p['target']}`\n")
        print(
            "| k | chosen arm (val-best) | val % | old: test % arm vs scratch (sel. seeds) | "
            "old: Δ [bootstrap 95% CI] | old gate | 11-27 table (3 seeds): arm vs scratch | "
            "new: test % arm vs chosen scratch (confirm seeds) | new: Δ [t 95% CI] | new gate | "
            "configs transfer vs scratch (scratch's pick) | labels used |"
        )
        print("|" + "---|" * 12)
        old = old_table(section)
        for rec in recs:
            print(_row(rec, old, rec["params"]["margin"]))
        interval_table(recs)
        wall = sum(r["wall_s"] for r in recs)
        trained = sum(r["summary"]["trained"] for r in recs)
        loads = ", ".join(" ".join(r["load_end"]) for r in recs)
        per_k = ", ".join(f"{r['wall_s']:.0f}" for r in recs)
        print(
            f"\nWall time: new {wall:.0f} s for k = {', '.join(str(r['k']) for r in recs)} "
            f"({trained} stages trained, per k: "
            f"{per_k} s) vs old sweep {old_wall:.0f} s "
            f"(3 seeds, no gate). Load average at the end of each run: {loads}."
        )
        pre = {r["strategy"]: r["pretrain_seconds"] for r in recs[0]["summary"]["table"]}
        pre_s = ", ".join(f"{k} {v:.0f}" for k, v in pre.items() if v)
        print(
            f"\nTraining seconds per run (pretraining in the first run: {pre_s} s; a run whose "
            "pretrainings count as reused took them from the previous k's run):\n"
        )
        for rec in recs:
            print(f"- {cost_line(rec)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="+", choices=sorted(SECTIONS))
    ap.add_argument("--k", default="1,5,10")
    ap.add_argument("--seeds", type=int, default=2, help="selection seeds (the default)")
    ap.add_argument("--confirm-seeds", type=int, default=5, help="confirmation seeds (default)")
    ap.add_argument("--out", type=Path, default=Path("test-output/protocol_rerun"))
    ap.add_argument("--table-only", action="store_true", help="reprint from saved runs")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ks = [int(k) for k in args.k.split(",")]
    if not args.table_only:
        # SIGTERM ends like Ctrl-C, so the finally below stops the private stack.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        home = Path(tempfile.mkdtemp(prefix="ws-protocol-"))
        cfg = start_stack(home)
        try:
            for name in args.scenarios:
                run_scenario(name, ks, args, args.out)
        finally:
            from prefect.logging.handlers import APILogWorker

            from warmstart.infra import stack as stack_mod

            APILogWorker.drain_all(timeout=5)
            stack_mod.down(cfg, echo=lambda s: print(s, file=sys.stderr))
            shutil.rmtree(home, ignore_errors=True)
    print(machine_line())
    table(args.scenarios, args.out)


if __name__ == "__main__":
    main()
