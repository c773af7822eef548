"""Report figures: confusion matrix and learning curves (the results table and the gate report
are ``warmstart.promotion``'s).

Figures are built as ``matplotlib.figure.Figure`` objects with an explicit Agg canvas instead of
through ``pyplot``: no global backend switch, no pyplot figure registry to leak, and safe to call
from the Prefect thread-pool task runner (pyplot is not thread-safe). Nothing runs at import.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from warmstart.errors import DataError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    """A Figure on an Agg canvas (renders to PNG without a display and without pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a figure (for S3 or a Prefect image artifact)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise DataError(
            f"{y_true.size} labels but {y_pred.size} predictions: pass one prediction per example"
        )
    bad = (y_true < 0) | (y_true >= n_classes) | (y_pred < 0) | (y_pred >= n_classes)
    if bad.any():
        raise DataError(f"labels or predictions outside 0..{n_classes - 1}: check class_names")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def confusion_matrix_figure(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], *, title: str = ""
) -> Figure:
    """Row-normalised confusion matrix with the counts written in the cells."""
    n = len(class_names)
    cm = confusion_matrix(y_true, y_pred, n)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = max(3.5, 0.45 * n + 1.5)
    fig = _figure(side + 0.8, side)
    ax = fig.add_subplot()
    im = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    ax.set_xticks(range(n), [str(c) for c in class_names], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(c) for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    color = "white" if rates[i, j] > 0.5 else "black"
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title + ': ' if title else ''}accuracy {100 * acc:.1f}% (n={cm.sum()})")
    return fig


def learning_curves_figure(history: Mapping[str, Sequence[Mapping[str, float]]]) -> Figure:
    """Loss and accuracy per epoch, one line per arm and split.

    ``history``: arm name → list of per-epoch dicts with any of ``train_loss``, ``val_loss``,
    ``train_acc``/``train_accuracy``, ``val_acc``/``val_accuracy`` and optionally ``epoch``.
    Train is drawn dashed, validation solid, in the same colour per arm.
    """
    if not history:
        raise DataError("no learning-curve history: pass {arm: [per-epoch metrics, ...]}")
    fig = _figure(10.0, 4.0)
    ax_loss, ax_acc = fig.subplots(1, 2)
    colors = [f"C{i % 10}" for i in range(len(history))]
    for color, (arm, epochs) in zip(colors, history.items(), strict=True):
        xs = [e.get("epoch", i + 1) for i, e in enumerate(epochs)]
        for split, style in (("train", "--"), ("val", "-")):
            for ax, names in (
                (ax_loss, (f"{split}_loss",)),
                (ax_acc, (f"{split}_acc", f"{split}_accuracy")),
            ):
                pts = [
                    (x, v)
                    for x, e in zip(xs, epochs, strict=True)
                    if (v := next((e[n] for n in names if e.get(n) is not None), None)) is not None
                ]
                if pts:
                    px, py = zip(*pts, strict=True)
                    ax.plot(px, py, style, color=color, label=f"{arm} ({split})", marker=".")
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if ax_acc.get_legend_handles_labels()[0]:
        ax_acc.legend(fontsize=7, loc="lower right")
    return fig
