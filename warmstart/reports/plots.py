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


# What each per-epoch key means on the plot: (panel, series label, line style). Fine-tuning
# histories carry train_/val_ loss and accuracy; pretraining ones carry ``loss`` (GAN: also
# ``d_loss``/``g_loss``, the drawn ones) and, for supervised pretraining, ``acc``.
_SERIES: dict[str, tuple[str, str, str]] = {
    "train_loss": ("loss", "train", "--"),
    "val_loss": ("loss", "val", "-"),
    "loss": ("loss", "train", "--"),
    "d_loss": ("loss", "discriminator", "--"),
    "g_loss": ("loss", "generator", ":"),
    "train_acc": ("accuracy", "train", "--"),
    "train_accuracy": ("accuracy", "train", "--"),
    "val_acc": ("accuracy", "val", "-"),
    "val_accuracy": ("accuracy", "val", "-"),
    "acc": ("accuracy", "train", "--"),
}


def _series(epochs: Sequence[Mapping[str, float]]) -> dict[tuple[str, str, str], list]:
    """(panel, label, style) → [(epoch, value)] for every known key of one history. ``loss`` is
    left out when ``d_loss``/``g_loss`` are there (it is their sum)."""
    keys = [k for k in _SERIES if any(e.get(k) is not None for e in epochs)]
    if "d_loss" in keys or "g_loss" in keys:
        keys = [k for k in keys if k != "loss"]
    out: dict[tuple[str, str, str], list] = {}
    for i, e in enumerate(epochs):
        x = e.get("epoch", i + 1)
        for k in keys:
            if e.get(k) is not None and np.isfinite(e[k]):
                out.setdefault(_SERIES[k], []).append((x, float(e[k])))
    return out


def learning_curves_figure(
    history: Mapping[str, Sequence[Mapping[str, float]]], *, title: str = ""
) -> Figure:
    """Loss (and accuracy where the history has it) per epoch, one colour per arm.

    ``history``: arm name → list of per-epoch dicts. Fine-tuning keys ``train_loss``,
    ``val_loss``, ``train_acc``/``train_accuracy``, ``val_acc``/``val_accuracy``; pretraining
    keys ``loss``, ``acc``, ``d_loss``, ``g_loss``; optionally ``epoch``. Train is dashed,
    validation solid. The accuracy panel is drawn only when some arm has accuracy.
    """
    from matplotlib.ticker import MaxNLocator  # deferred: heavy (matplotlib)

    lines = {arm: _series(epochs) for arm, epochs in history.items()}
    if not any(lines.values()):
        raise DataError(
            "no learning-curve history: pass {arm: [per-epoch metrics, ...]} with loss or accuracy"
        )
    panels = ["loss"] + (
        ["accuracy"] if any(p == "accuracy" for s in lines.values() for p, _, _ in s) else []
    )
    fig = _figure(5.0 * len(panels) + 1.0, 4.0)
    axes = dict(zip(panels, fig.subplots(1, len(panels), squeeze=False)[0], strict=True))
    for n, (arm, series) in enumerate(lines.items()):
        for (panel, label, style), pts in series.items():
            px, py = zip(*pts, strict=True)
            name = f"{arm} ({label})" if len(lines) > 1 else label
            axes[panel].plot(px, py, style, color=f"C{n % 10}", label=name, marker=".")
    for panel, ax in axes.items():
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(panel if panel == "loss" else "accuracy (fraction)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title or ", ".join(history))
    return fig


# Captions of the pretraining artifact images, by artifact name (``models`` draws them unlabelled).
ARTIFACT_CAPTIONS = {
    "ae_reconstructions": "autoencoder — odd rows (1st, 3rd, …): inputs spread over the set; "
    "even rows: their reconstructions, each under its input",
    "gan_samples": "GAN generator samples (fixed noise, after the last epoch)",
}


def captioned_image_figure(image: np.ndarray, title: str, *, label: str = "") -> Figure:
    """An H×W×3 uint8 image drawn pixel for pixel (no axes) under a title; ``label`` is an
    optional line below it (e.g. which strategy made it)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"image of shape {image.shape}: pass an H×W×3 uint8 array")
    h, w = image.shape[:2]
    scale = max(1.0, 480 / max(h, w))  # at least 480 px on the long side
    fig = _figure(w * scale / 100 + 0.4, h * scale / 100 + 0.8)
    ax = fig.add_subplot()
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9, wrap=True)
    if label:
        ax.text(0.5, -0.02, label, transform=ax.transAxes, ha="center", va="top", fontsize=8)
    return fig


def artifact_png(name: str, png: bytes, *, label: str = "") -> bytes:
    """A stored pretraining artifact PNG redrawn larger under its caption (the name when none
    is known)."""
    from PIL import Image  # deferred: heavy, and only needed for artifact images

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return figure_png(captioned_image_figure(image, ARTIFACT_CAPTIONS.get(name, name), label=label))
