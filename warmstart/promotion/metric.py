"""What the gate compares: accuracy, or balanced accuracy (the mean of the per-class
accuracies), which an imbalanced target needs — there a model that drops a rare class loses
little accuracy. Balanced accuracy is a weighted accuracy: example ``i`` of class ``y_i`` weighs
``1 / (K · n(y_i))`` (the weights sum to 1), so the gate's interval takes per-example weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from warmstart.contracts import Evaluation, Job

Metric = Literal["auto", "accuracy", "balanced_accuracy"]
IMBALANCE_RATIO = 1.5  # auto: balanced when the largest test class has > 1.5x the smallest's


def imbalance(y: Sequence[int], k: int) -> float:
    """Largest class count over smallest (inf when a class has no test image)."""
    counts = np.bincount(np.asarray(y, dtype=int), minlength=k)
    return float(counts.max() / counts.min()) if counts.min() > 0 else float("inf")


def resolve(metric: Metric, y: Sequence[int], k: int) -> str:
    """``accuracy`` or ``balanced_accuracy``; ``auto`` picks balanced beyond IMBALANCE_RATIO."""
    if metric != "auto":
        return metric
    return "balanced_accuracy" if imbalance(y, k) > IMBALANCE_RATIO else "accuracy"


def weights(metric: str, y: Sequence[int], k: int) -> np.ndarray | None:
    """Per-example weights of ``metric`` on labels ``y`` (None: plain accuracy)."""
    if metric != "balanced_accuracy":
        return None
    y = np.asarray(y, dtype=int)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    present = int((counts > 0).sum())
    return 1.0 / (present * counts[y])


def gate_metric(job: Job, evaluation: Evaluation) -> str:
    """What ``job.params.metric`` resolves to on this run's test set."""
    return resolve(job.params.metric, evaluation.y_test, len(evaluation.classes))


def gate_weights(job: Job, evaluation: Evaluation) -> np.ndarray | None:
    """The weights of the metric ``job.params.metric`` resolves to on this run's test set."""
    k, y = len(evaluation.classes), evaluation.y_test
    return weights(gate_metric(job, evaluation), y, k)
