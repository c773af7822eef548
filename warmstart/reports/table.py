"""The results table: one row per arm, computed once (``summarize``) and formatted once
(``table_cells``) for the CLI, the Prefect table artifact and the Markdown logged to MLflow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from warmstart.contracts import SCRATCH, Evaluation, SourceModel, SplitRef, TableRow
from warmstart.promotion.classes import class_accuracy
from warmstart.promotion.stats import accuracy_ci, paired_bootstrap

COLUMNS = (
    "arm",
    "seeds",
    "val acc",
    "test acc (95% CI)",
    "balanced acc",  # the mean of the per-class accuracies: what an imbalanced target's gate reads
    "Δ vs scratch (95% CI)",
    "pretrain s",
    "fine-tune s",
    "pretrain images",  # pretraining compute beside its seconds: epochs × images
)
TITLE = "transfer vs scratch on the target test split"
# Which interval each row's Δ CI is (the CLI's caption, the Markdown's last line).
NOTE = (
    "Δ vs scratch CI: paired bootstrap over seeds × test examples; rows marked (confirm): the "
    "gate's two-way interval over seeds and test images (confirmation seeds)"
)


def pretrain_images(source: SourceModel | None) -> int:
    """A source's pretraining compute in images: epochs × the images it pretrained on."""
    if source is None or source.stage is None:
        return 0
    return len(source.stage.history) * source.images


def summarize(evaluation: Evaluation, sources: Mapping[str, SourceModel]) -> list[TableRow]:
    """Per arm: mean validation accuracy, test accuracy with its bootstrap CI, the paired
    difference to scratch with its CI, balanced accuracy (the mean of the per-class test
    accuracies, averaged over seeds), pretraining and fine-tuning seconds.

    ``sources`` maps a source label (the strategy) to the source model its arms were built on.
    A single-seed arm (a control) is compared with each scratch seed by repeating its row.
    """
    scratch = np.asarray(evaluation.arms[SCRATCH].correct, dtype=bool)
    rows = []
    for name, arm in evaluation.arms.items():
        correct = np.asarray(arm.correct, dtype=bool)
        acc = accuracy_ci(correct)
        if name == SCRATCH:
            delta = {"mean_diff": 0.0, "ci_low": 0.0, "ci_high": 0.0}
        elif correct.shape == scratch.shape:
            delta = paired_bootstrap(correct, scratch)
        else:
            repeated = np.repeat(correct, scratch.shape[0], axis=0)[: scratch.shape[0]]
            delta = paired_bootstrap(repeated, scratch)
        source = sources.get(arm.strategy or "")
        rows.append(
            TableRow(
                arm=name,
                strategy=arm.strategy or "-",
                mode=arm.mode,
                seeds=len(arm.seeds),
                val_acc=float(np.mean(arm.val_acc)),
                test_acc=float(acc["accuracy"]),
                test_ci=(float(acc["ci_low"]), float(acc["ci_high"])),
                delta_vs_scratch=float(delta["mean_diff"]),
                delta_ci=(float(delta["ci_low"]), float(delta["ci_high"])),
                pretrain_seconds=float(source.seconds) if source is not None else 0.0,
                finetune_seconds=float(np.sum(arm.seconds)),
                pretrain_images=pretrain_images(source),
                balanced_acc=balanced_accuracy(evaluation, arm.pred),
            )
        )
    return rows


def balanced_accuracy(evaluation: Evaluation, preds: Sequence[Sequence[int]]) -> float | None:
    """The mean of the per-class test accuracies (classes with test images), over the seeds'
    predictions ``preds``; None without predictions."""
    y = np.asarray(evaluation.y_test, dtype=int)
    if not len(preds) or y.size == 0:
        return None
    k = max(len(evaluation.classes), int(y.max()) + 1)
    return float(np.nanmean(class_accuracy(y, preds, k)))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def table_cells(rows: Sequence[TableRow]) -> list[dict[str, str]]:
    """Display rows (column name → text): accuracies in percent, differences in points,
    intervals as [low, high]. The one formatter behind every table the user sees."""
    return [
        dict(
            zip(
                COLUMNS,
                (
                    r.arm,
                    str(r.seeds),
                    f"{_pct(r.val_acc)}%",
                    f"{_pct(r.test_acc)}% [{_pct(r.test_ci[0])}, {_pct(r.test_ci[1])}]",
                    "–" if r.balanced_acc is None else f"{_pct(r.balanced_acc)}%",
                    f"{_pts(r.delta_vs_scratch)} [{_pts(r.delta_ci[0])}, {_pts(r.delta_ci[1])}]",
                    f"{r.pretrain_seconds:.1f}",
                    f"{r.finetune_seconds:.1f}",
                    f"{r.pretrain_images:,}",
                ),
                strict=True,
            )
        )
        for r in rows
    ]


def markdown(cells: Sequence[Mapping[str, str]]) -> str:
    """A Markdown table of display rows; columns from the first row."""
    if not cells:
        return "_no results_\n"
    cols = list(cells[0].keys())

    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in cells]
    return "\n".join(lines) + "\n"


def table_markdown(rows: Sequence[TableRow]) -> str:
    """The results table in Markdown (MLflow artifact, Prefect Markdown), with ``NOTE``."""
    return markdown(table_cells(rows)) + f"\n{NOTE}.\n"


def removed_note(split: SplitRef) -> str:
    """The table's footnote: the images every arm was evaluated without (0 is said too)."""
    return (
        f"\n\nEvery arm evaluated without {split.removed_val} validation and "
        f"{split.removed_test} test images that the leakage guard flagged.\n"
    )
