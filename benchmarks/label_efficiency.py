"""Label-efficiency benchmarks (issue 7): k-shot curves per arm, and compute to reach scratch.

Runs the `label-efficiency` flow against the running stack (`warmstart up`, `eval $(warmstart env)`)
and prints Markdown: the accuracy table (mean [95% CI] over seeds) and, per transfer arm at each k,
the epochs and seconds it needs to reach scratch's best validation accuracy, without and with the
pretraining cost.

    python benchmarks/label_efficiency.py mnist-uci
    python benchmarks/label_efficiency.py split-mnist
    python benchmarks/label_efficiency.py shapes
    python benchmarks/label_efficiency.py shapes-hard-32 --k 1,5,10,20   # the flow's preset
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import machine_line  # this script's folder

from warmstart.sweep import PRESETS as SWEEP_PRESETS

PRESETS = {
    "mnist-uci": dict(
        source="builtin:mnist-5k?crop=content",
        target="builtin:uci-digits",
        strategies=["supervised", "gan", "autoencoder"],
        transfer_modes=["finetune", "linear_probe", "lp_ft"],
    ),
    "split-mnist": dict(
        source="builtin:mnist-5k?classes=0-4&size=16x16",
        target="builtin:mnist-5k?classes=5-9&size=16x16",
        strategies=["supervised", "gan", "autoencoder"],
        transfer_modes=["finetune", "linear_probe"],
    ),
    "shapes": dict(
        source="builtin:shapes?n=3000&num_classes=8&classes=0-3&size=16x16",
        target="builtin:shapes?n=3000&num_classes=8&classes=4-7&size=16x16",
        strategies=["supervised", "gan", "autoencoder"],
        transfer_modes=["finetune", "linear_probe"],
    ),
}
# The flow's named scenarios (warmstart/sweep.py), e.g. shapes-hard-32 (issue 16). They carry
# their own k values; --k and --seeds still override.
PRESETS.update({name: dict(preset) for name, preset in SWEEP_PRESETS.items()})


def _cumulative(seconds: list[float]) -> list[float]:
    if all(b >= a for a, b in zip(seconds, seconds[1:], strict=False)):
        return seconds  # already cumulative
    return list(np.cumsum(seconds))


def to_reach(rows: list[dict], pretrain_seconds: dict[str, float]) -> list[dict]:
    """Per k and transfer arm: epochs/seconds until its val acc first reaches scratch's best."""
    out = []
    for k in sorted({r["k"] for r in rows}):
        at_k = {r["arm"]: r for r in rows if r["k"] == k}
        scratch = at_k.get("scratch")
        if not scratch or not scratch["histories"]:
            continue
        goal = float(np.mean([max(h[1] for h in hist) for hist in scratch["histories"]]))
        s_epochs = float(np.mean([len(h) for h in scratch["histories"]]))
        s_secs = float(np.mean([_cumulative([e[2] for e in h])[-1] for h in scratch["histories"]]))
        for arm, r in at_k.items():
            if arm == "scratch" or arm.startswith("control/") or not r["histories"]:
                continue
            eps, secs = [], []
            for hist in r["histories"]:
                cum = _cumulative([e[2] for e in hist])
                hit = next((i for i, e in enumerate(hist) if e[1] >= goal), None)
                eps.append(hist[hit][0] if hit is not None else float("nan"))
                secs.append(cum[hit] if hit is not None else float("nan"))
            pre = pretrain_seconds.get(arm.split("/")[0], 0.0)
            out.append(
                dict(
                    k=k,
                    arm=arm,
                    goal=goal,
                    scratch_epochs=s_epochs,
                    scratch_seconds=s_secs,
                    epochs=float(np.nanmean(eps)) if not np.all(np.isnan(eps)) else None,
                    reached=int(np.sum(~np.isnan(eps))),
                    seeds=len(eps),
                    seconds=float(np.nanmean(secs)) if not np.all(np.isnan(secs)) else None,
                    pretrain_seconds=pre,
                )
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", choices=sorted(PRESETS))
    ap.add_argument("--k", default="1,5,10", help="comma list of k values")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()

    from warmstart.settings import load_env

    load_env()  # before Prefect is imported: it reads PREFECT_API_URL once, at import
    from warmstart import logsafe
    from warmstart.flows.label_efficiency import label_efficiency
    from warmstart.params import SweepParams

    logsafe.install()
    params = SweepParams(
        **{
            **PRESETS[args.preset],
            "seeds": args.seeds,
            "k_values": [int(k) for k in args.k.split(",")],
        }
    )
    t0 = time.time()
    out = label_efficiency(params)
    wall = time.time() - t0
    print(f"\n### {args.preset}: {params.source} → {params.target}\n")
    print(
        f"{machine_line()} (at the end); wall {wall:.0f} s; {out['trained']} stages trained, "
        f"{out['reused']} reused.\n"
    )
    print(
        f"Command: `python benchmarks/label_efficiency.py {args.preset} --k {args.k} --seeds {args.seeds}`\n"
    )
    print("Test accuracy %, mean [95% CI] over seeds × test images:\n")
    print(out["markdown"])
    pre = {r["arm"].split("/")[0]: 0.0 for r in out["rows"]}
    pre.update(out.get("pretrain_seconds", {}))
    reach = to_reach(out["rows"], pre)
    print("\nCompute to reach scratch's best validation accuracy (means over seeds):\n")
    print("| k | arm | scratch epochs / s | arm epochs / s (seeds reaching) | + pretraining s |")
    print("|---|---|---|---|---|")
    for r in reach:
        e = "never" if r["epochs"] is None else f"{r['epochs']:.1f} / {r['seconds']:.1f}"
        tot = "—" if r["seconds"] is None else f"{r['seconds'] + r['pretrain_seconds']:.1f}"
        print(
            f"| {r['k']} | {r['arm']} | {r['scratch_epochs']:.0f} / {r['scratch_seconds']:.1f} | "
            f"{e} ({r['reached']}/{r['seeds']}) | {tot} |"
        )


if __name__ == "__main__":
    main()
