"""Report figures and text: confusion matrix, learning curves, the accuracy table, the gate report.

Figures are built as ``matplotlib.figure.Figure`` objects with an explicit Agg canvas instead of
through ``pyplot``: no global backend switch, no pyplot figure registry to leak, and safe to call
from the Prefect thread-pool task runner (pyplot is not thread-safe). Nothing runs at import.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from warmstart.errors import DataError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from warmstart.gate import GateDecision


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


def image_grid(images: np.ndarray, *, columns: int = 8) -> np.ndarray:
    """Tile N×C×H×W images (uint8, or float in [0, 1]) into one H×W×C uint8 array for logging."""
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise DataError(f"images have shape {arr.shape}: pass N×C×H×W")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    n, c, h, w = arr.shape
    cols = min(columns, n)
    rows = -(-n // cols)
    grid = np.zeros((rows * (h + 1) + 1, cols * (w + 1) + 1, c), dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + k * (w + 1) : 1 + k * (w + 1) + w] = arr[
            i
        ].transpose(1, 2, 0)
    return grid[..., 0] if c == 1 else grid


def table_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table from display rows (e.g. ``gate.summary_table``); columns from row 1."""
    if not rows:
        return "_no results_\n"
    cols = list(rows[0].keys())

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(c) for c in cols) + " |",
        "|" + "|".join("---" for _ in cols) + "|",
    ]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def gate_report(
    decision: GateDecision,
    table: Sequence[Mapping[str, Any]] = (),
    *,
    context: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """The gate report as (JSON, Markdown): the verdict, its numbers, the accuracy table.

    ``context`` (flow run id, target, source, k_shot, model version ...) is copied into both.
    """
    payload = {
        "decision": decision.to_dict(),
        "table": [dict(r) for r in table],
        "context": dict(context or {}),
    }
    md = [decision.to_markdown()]
    if context:
        md += ["", "### Run", ""] + [f"- **{k}**: {v}" for k, v in context.items()]
    if table:
        md += ["", "### All arms (selection on validation; test reported once)", ""]
        md.append(table_markdown(table))
    return json.dumps(payload, indent=2, sort_keys=False, default=_json_default), "\n".join(md)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
