"""Classes the gate's candidate serves worse than scratch, named in the verdict (pure).

Overall accuracy, and even balanced accuracy, can rise while one class falls: a model that
drops a rare class loses little of either. So the verdict names every class whose accuracy
under the candidate is more than ``CLASS_DROP`` below scratch's, both averaged over the gate's
seeds (the confirmation seeds in the pipeline), on the same test images.

Why 10 points: per class, both arms are scored on the same few test images, and averaging over
seeds does not shrink what those images happen to hold. With ~36 test images of a class (UCI
digits, 20% test) and accuracies near 80%, the binomial spread of the difference of the two
arms' accuracies is about √(2 · 0.8 · 0.2 / 36) ≈ 9.4 points, so a smaller gap is within what
one test set's images move by. The flag is a warning to look, never a gate rule: on a class
with only a handful of test images (6 in the imbalanced scenario) a 10-point gap is 3 of its 30
predictions over 5 seeds, and the line says how many test images the class has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from warmstart.contracts import SCRATCH, Evaluation

CLASS_DROP = 0.10  # named when scratch's class accuracy exceeds the candidate's by more


def class_accuracy(y: Sequence[int], preds: Sequence[Sequence[int]], k: int) -> np.ndarray:
    """Accuracy within each true class, averaged over the rows of ``preds`` (one per seed);
    NaN for a class with no test image."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(preds, dtype=int).reshape(-1, y.size)
    counts = np.bincount(y, minlength=k)
    right = np.array([np.bincount(y[row == y], minlength=k) for row in p])  # (seeds, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, right.mean(axis=0) / np.maximum(counts, 1), np.nan)


def class_drops(
    y: Sequence[int],
    candidate_pred: Sequence[Sequence[int]],
    scratch_pred: Sequence[Sequence[int]],
    classes: Sequence[str],
    drop: float = CLASS_DROP,
) -> list[dict[str, Any]]:
    """Classes more than ``drop`` below scratch (JSON-ready, largest drop first): class,
    test images, candidate and scratch accuracy (means over their seeds), the difference."""
    k = len(classes)
    mine = class_accuracy(y, candidate_pred, k)
    base = class_accuracy(y, scratch_pred, k)
    counts = np.bincount(np.asarray(y, dtype=int), minlength=k)
    out = [
        {
            "class": str(classes[c]),
            "test_images": int(counts[c]),
            "accuracy": float(mine[c]),
            "scratch_accuracy": float(base[c]),
            "diff": float(mine[c] - base[c]),
        }
        for c in range(k)
        if counts[c] > 0 and base[c] - mine[c] > drop
    ]
    return sorted(out, key=lambda r: (r["diff"], r["class"]))


def gate_class_drops(evaluation: Evaluation, candidate: str) -> list[dict[str, Any]]:
    """``class_drops`` of the gate's candidate against scratch on ``evaluation`` (the
    confirmation seeds' in the pipeline); none when either arm has no predictions."""
    arm, scratch = evaluation.arms[candidate], evaluation.arms.get(SCRATCH)
    if scratch is None or not arm.pred or not scratch.pred:
        return []
    return class_drops(evaluation.y_test, arm.pred, scratch.pred, evaluation.classes)
