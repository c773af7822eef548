"""Label efficiency's report: accuracy vs labelled images per class (k), every arm, mean ± 95%
CI, as rows (``curve_rows``, ``with_compute``), a Markdown table, a figure and JSON.

Plain functions over the pipeline's per-k evaluations (the flow, flows/label_efficiency.py, and
its named scenarios, ``warmstart.sweep.PRESETS``, are elsewhere); nothing here runs a model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from warmstart.contracts import ArmResult, Evaluation, SourceModel
from warmstart.promotion import accuracy_ci
from warmstart.reports.plots import figure_png as to_png


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


def pretrain_compute(source: SourceModel) -> dict[str, float]:
    """What a source model's pretraining cost: epochs × images (the images it pretrained on),
    epochs, and wall seconds (zeros for a source that was not pretrained here)."""
    epochs = len(source.stage.history) if source.stage else 0
    return {"images": epochs * source.images, "passes": epochs, "seconds": float(source.seconds)}


def with_compute(rows: list[dict], sources: Sequence[SourceModel]) -> list[dict]:
    """Rows with ``pretrain_images`` / ``pretrain_passes`` / ``pretrain_seconds`` of the source
    their arm was built on (zeros for scratch and the controls), so cost sits beside accuracy."""
    cost = {s.label: pretrain_compute(s) for s in sources}
    none = {"images": 0, "passes": 0, "seconds": 0.0}
    out = []
    for r in rows:
        c = cost.get(r["arm"].split("/")[0], none)
        out.append(
            {
                **r,
                "pretrain_images": c["images"],
                "pretrain_passes": c["passes"],
                "pretrain_seconds": c["seconds"],
            }
        )
    return out


def compute_cell(row: dict) -> str:
    """``epochs × images (epochs), seconds`` of an arm's pretraining, or "—" when none ran."""
    if not row.get("pretrain_images"):
        return "—"
    return (
        f"{row['pretrain_images']:,} img ({row.get('pretrain_passes', 0)} ep), "
        f"{row.get('pretrain_seconds', 0.0):.0f} s"
    )


def markdown(rows: list[dict]) -> str:
    """Arms as rows, k as columns: ``mean [low, high]`` in percent; a last column with the
    pretraining compute when the rows carry it (``with_compute``)."""
    ks = sorted({r["k"] for r in rows})
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    cell = {(r["arm"], r["k"]): r for r in rows}
    costed = any("pretrain_images" in r for r in rows)
    extra = " pretraining (epochs × images, wall) |" if costed else ""
    out = [
        "| arm | " + " | ".join(f"k={k}" for k in ks) + " |" + extra,
        "|---|" + "---|" * (len(ks) + costed),
    ]
    for arm in arms:
        cells = []
        for k in ks:
            r = cell.get((arm, k))
            cells.append(
                f"{100 * r['test_acc']:.1f} [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"
                if r
                else "—"
            )
        if costed:
            cells.append(compute_cell(next(r for r in rows if r["arm"] == arm)))
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


CAPTION = "Test accuracy %, mean [95% CI] over seeds."


def page_markdown(title: str, table: str, *, caption: bool = False) -> str:
    """The sweep's page: a heading, the caption when asked (the Prefect artifact has it), the
    table (``markdown(rows)``)."""
    return f"# {title}\n\n" + (f"{CAPTION}\n\n" if caption else "") + table


def table_artifact_rows(rows: list[dict]) -> list[dict]:
    """The rows of the Prefect table artifact: floats to 4 places, the histories left out."""
    return [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "histories"}
        for r in rows
    ]
