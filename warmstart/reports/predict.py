"""What batch prediction writes besides the model call: the prediction table (top-1 or top-k
columns) and, when the images sit in class sub-folders named like the model's classes, the
accuracy and the confusion matrix.

Layouts. ``--top-k 1`` (the default): ``file, class, probability``. ``--top-k N``: ``file,
class_1, probability_1, …, class_N, probability_N``, most probable first. The confusion matrix
is a CSV next to ``--out`` (``preds.csv`` → ``preds.confusion.csv``): one row per true class
(``true`` column), one column per predicted class, image counts.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np

from warmstart.errors import ConfigError
from warmstart.reports.plots import confusion_matrix

TOP1_COLUMNS = ("file", "class", "probability")
CONFUSION_SUFFIX = ".confusion.csv"


def check_top_k(top_k: int, classes: int | None = None) -> None:
    """``--top-k`` must be 1..K (the model's class count, once known)."""
    if top_k < 1 or (classes is not None and top_k > classes):
        fix = f"use 1..{classes} (the model has {classes} classes)" if classes else "use 1 or more"
        raise ConfigError(f"--top-k {top_k}: {fix}")


def top_k_columns(k: int) -> list[str]:
    """The table's columns for ``k`` predictions per image."""
    if k == 1:
        return list(TOP1_COLUMNS)
    pairs = [(f"class_{i}", f"probability_{i}") for i in range(1, k + 1)]
    return ["file", *(name for pair in pairs for name in pair)]


def predictions_frame(files: list[str], classes: list[str], probs: np.ndarray, k: int = 1):
    """One row per image: the ``k`` most probable classes and their probabilities."""
    import pandas as pd  # deferred: heavy

    order = (
        np.argsort(-probs, axis=1, kind="stable")[:, :k] if len(probs) else np.zeros((0, k), int)
    )
    data: dict[str, object] = {"file": files}
    for i in range(k):
        top = order[:, i]
        suffix = "" if k == 1 else f"_{i + 1}"
        data[f"class{suffix}"] = [classes[j] for j in top]
        data[f"probability{suffix}"] = probs[np.arange(len(top)), top].astype(np.float64)
    return pd.DataFrame(data, columns=top_k_columns(k))


def true_classes(files: list[str], classes: list[str]) -> list[str] | None:
    """Each file's class from its top-level sub-folder, when every image sits in a sub-folder
    named after one of the model's classes; otherwise None (no evaluation)."""
    known = set(classes)
    out = []
    for name in files:
        parts = PurePosixPath(name).parts
        if len(parts) < 2 or parts[0] not in known:
            return None
        out.append(parts[0])
    return out or None


def confusion_path(out: str) -> str:
    """``preds.csv`` → ``preds.confusion.csv`` (local path or s3:// key alike)."""
    stem, dot, _ = out.rpartition(".")
    return (stem if dot else out) + CONFUSION_SUFFIX


def evaluate(files: list[str], classes: list[str], predicted: np.ndarray) -> dict | None:
    """Accuracy and the confusion matrix (a DataFrame) when the folder is labelled, else None."""
    import pandas as pd  # deferred: heavy

    truth = true_classes(files, classes)
    if truth is None:
        return None
    index = {c: i for i, c in enumerate(classes)}
    matrix = confusion_matrix(np.array([index[t] for t in truth]), predicted, len(classes))
    frame = pd.DataFrame(matrix, columns=classes)
    frame.insert(0, "true", classes)
    return {
        "accuracy": float(np.trace(matrix) / matrix.sum()),
        "labelled": int(matrix.sum()),
        "confusion": frame,
    }
