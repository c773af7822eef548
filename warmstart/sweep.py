"""Label efficiency: accuracy vs labelled images per class (k), every arm, mean ± 95% CI.

Plain functions over the pipeline's per-k evaluations; the flow (flows/label_efficiency.py)
composes the same cached stages as the transfer pipeline, so a source model is pretrained once
per strategy and reused across every k and seed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from warmstart.contracts import ArmResult, Evaluation
from warmstart.promotion import accuracy_ci
from warmstart.reports import figure_png as to_png


def curve_rows(k: int, evaluation: Evaluation, results: Sequence[ArmResult] = ()) -> list[dict]:
    """One row per arm at this k: mean test accuracy over seeds with a bootstrap 95% CI, and each
    seed's per-epoch validation history (for compute-to-accuracy comparisons)."""
    rows = []
    for name, arm in evaluation.arms.items():
        histories = [
            [[h.get("epoch", 0), h.get("val_acc"), h.get("seconds")] for h in r.stage.history]
            for r in results
            if r.arm == name
        ]
        acc = accuracy_ci(np.asarray(arm.correct, dtype=bool))
        rows.append(
            {
                "k": k,
                "arm": name,
                "seeds": len(arm.seeds),
                "val_acc": float(np.mean(arm.val_acc)),
                "test_acc": float(acc["accuracy"]),
                "ci_low": float(acc["ci_low"]),
                "ci_high": float(acc["ci_high"]),
                "train_seconds": float(np.sum(arm.seconds)),
                "histories": histories,
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    """Arms as rows, k as columns: ``mean [low, high]`` in percent."""
    ks = sorted({r["k"] for r in rows})
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    cell = {(r["arm"], r["k"]): r for r in rows}
    out = ["| arm | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for arm in arms:
        cells = []
        for k in ks:
            r = cell.get((arm, k))
            cells.append(
                f"{100 * r['test_acc']:.1f} [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"
                if r
                else "—"
            )
        out.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def figure_png(rows: list[dict], title: str = "") -> bytes:
    """Accuracy vs k (log axis) with a 95% CI band per arm."""
    fig = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for arm in dict.fromkeys(r["arm"] for r in rows):
        pts = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["k"])
        ks = [r["k"] for r in pts]
        style = "--" if arm.startswith("control/") else ("-" if arm != "scratch" else ":")
        ax.plot(ks, [100 * r["test_acc"] for r in pts], style, marker="o", label=arm)
        ax.fill_between(
            ks, [100 * r["ci_low"] for r in pts], [100 * r["ci_high"] for r in pts], alpha=0.15
        )
    ax.set_xscale("log")
    ax.set_xlabel("labelled images per class (k)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "label efficiency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return to_png(fig)


def dumps(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2)
