"""What users read of a ranking, rendered from its results (never by running a model): the
table (candidate, each score, feature-extraction seconds), the Markdown report whose first line
is the verdict-style ``chosen: …, by <score>, on validation``, and a bar plot per score."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from warmstart.ranking.order import Ranking, chosen_line, fmt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PAID_ONCE = (
    "A dataset candidate's pretraining is a cached stage: paid once (seconds above), then "
    "reused by every later ranking and by `warmstart run` on the same source."
)


def score_names(ranking: Ranking) -> list[str]:
    """The scores the table shows, the ranking score first."""
    seen = dict.fromkeys([ranking.score])
    for row in ranking.rows:
        seen |= dict.fromkeys(row.scores)
    return list(seen)


def table_rows(ranking: Ranking) -> list[dict[str, str]]:
    """One row per candidate, best first: the cells of the CLI, MLflow and Prefect tables."""
    names = score_names(ranking)
    rows = []
    for i, r in enumerate(ranking.rows, 1):
        cells = {"rank": str(i), "source": r.name}
        cells |= {n: fmt(r.scores.get(n)) for n in names}
        cells["features s"] = f"{r.extract_seconds:.2f}"
        cells["pretraining s"] = (
            "reused"
            if r.pretrain_reused
            else f"{r.pretrain_seconds:.1f}"
            if r.pretrain_seconds
            else "-"
        )
        rows.append(cells)
    return rows


def markdown(ranking: Ranking, target: str, k_shot: int) -> str:
    rows = table_rows(ranking)
    head = list(rows[0])
    images = ranking.chosen.images
    lines = [
        f"**{chosen_line(ranking)}**",
        "",
        f"Target {target}, k={k_shot}: scored on {images.get('train', 0)} k-shot training and "
        f"{images.get('val', 0)} validation images (frozen features; never the test images). "
        "Higher is better; n/a: the score does not apply (no source head).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r.values()) + " |" for r in rows),
        "",
        PAID_ONCE,
    ]
    return "\n".join(lines)


def ranking_figure(ranking: Ranking) -> Figure:
    """One panel per score: each candidate's value (n/a left empty), the chosen one dark."""
    from warmstart.reports.plots import _figure  # deferred: heavy (matplotlib)

    names = score_names(ranking)
    fig = _figure(3.2 * len(names), 0.4 * len(ranking.rows) + 1.6)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    labels = [r.name for r in ranking.rows]
    y = np.arange(len(labels))
    for ax, name in zip(axes, names, strict=True):
        values = [r.scores.get(name) for r in ranking.rows]
        bars = [np.nan if v is None else float(v) for v in values]
        colours = ["#1f4e79" if i == 0 else "#9dc3e6" for i in range(len(labels))]
        ax.barh(y, np.nan_to_num(bars, nan=0.0), color=colours)
        ax.set_title(name + (" (ranks)" if name == ranking.score else ""), fontsize=9)
        ax.set_yticks(y, labels if ax is axes[0] else [""] * len(labels), fontsize=8)
        ax.invert_yaxis()
    fig.suptitle(chosen_line(ranking), fontsize=10)
    return fig
