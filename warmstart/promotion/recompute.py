"""A verdict a reviewer can recompute: every arm's per-example predictions for every seed the run
trained (selection and confirmation) as one table, and the one call that turns that table back
into the gate's interval.

``predictions.parquet`` (the pipeline's parent MLflow run) has one row per arm × phase × seed ×
test example: ``arm, phase, seed, test_index, label, pred, correct, gate, metric``. ``gate``
marks the rows the gate decided on: ``candidate`` (the chosen arm) and ``scratch``; empty
elsewhere. ``metric`` is what the gate compared on those rows (``accuracy`` or
``balanced_accuracy``, as ``--metric`` resolved; empty elsewhere). ``recompute_verdict`` reads
those rows, weighs the examples as that metric does (balanced accuracy: ``1 / (K · n(class))``
from the ``label`` column, ``metric.weights``) and calls the gate's own interval
(``policy.scratch_interval``), so it returns the numbers of ``gate_report.json``'s
``delta_vs_scratch``; ``metric=`` recomputes it under the other metric::

    from mlflow import MlflowClient
    from warmstart.promotion import recompute_verdict

    path = MlflowClient().download_artifacts(run_id, "predictions.parquet", "/tmp")
    recompute_verdict(path)  # {'mean_diff': …, 'ci_low': …, 'ci_high': …, 'method': 'two-way', …}
    recompute_verdict(path, metric="accuracy")  # the same seeds and images, plain accuracy
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from warmstart.contracts import Evaluation
from warmstart.errors import DataError
from warmstart.promotion import metric as metrics
from warmstart.promotion.policy import INTERVAL, scratch_interval
from warmstart.promotion.stats import ALPHA, BOOT_SEED, N_BOOT

COLUMNS = ("arm", "phase", "seed", "test_index", "label", "pred", "correct", "gate")
METRICS = ("accuracy", "balanced_accuracy")
CANDIDATE, SCRATCH_ROLE = "candidate", "scratch"


def predictions_frame(
    evaluation: Evaluation,
    phase: str,
    gate: tuple[str, str] | None = None,
    metric: str = "accuracy",
) -> pd.DataFrame:
    """Per-example predictions of every arm and seed of one phase (``selection`` or
    ``confirmation``). ``gate`` = (candidate arm, scratch arm) marks the rows the gate read, and
    ``metric`` (resolved: ``accuracy`` or ``balanced_accuracy``) what it compared on them."""
    roles = dict(zip(gate, (CANDIDATE, SCRATCH_ROLE), strict=True)) if gate else {}
    frames = [
        pd.DataFrame(
            {
                "arm": name,
                "phase": phase,
                "seed": seed,
                "test_index": evaluation.test_index,
                "label": evaluation.y_test,
                "pred": arm.pred[i],
                "correct": arm.correct[i],
                "gate": roles.get(name, ""),
                "metric": metric if name in roles else "",
            }
        )
        for name, arm in evaluation.arms.items()
        for i, seed in enumerate(arm.seeds)
    ]
    return pd.concat(frames, ignore_index=True)


def to_parquet(*frames: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    pd.concat(frames, ignore_index=True).to_parquet(buf, index=False)
    return buf.getvalue()


def _read(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    frame = source if isinstance(source, pd.DataFrame) else pd.read_parquet(Path(source))
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"the predictions table lacks the columns {missing}: pass the predictions.parquet "
            "of a pipeline run made with warmstart ≥ issue 21 (it logs the gate's rows)"
        )
    return frame


def _matrix(rows: pd.DataFrame, role: str) -> tuple[np.ndarray, list[int], list[int]]:
    """(seeds, examples) correctness of one role, in the file's seed and example order."""
    part = rows[rows["gate"] == role]
    if part.empty:
        raise DataError(
            f"no rows marked gate={role!r}: this table has no gate rows (pass the pipeline's "
            "predictions.parquet, not the label-efficiency flow's)"
        )
    seeds = list(dict.fromkeys(part["seed"].tolist()))
    by_seed = [part[part["seed"] == s] for s in seeds]
    index = by_seed[0]["test_index"].tolist()
    if any(g["test_index"].tolist() != index for g in by_seed):
        raise DataError(f"the {role} rows' seeds cover different test examples: a corrupt table")
    return np.array([g["correct"].to_numpy(dtype=bool) for g in by_seed]), seeds, index


def _metric(rows: pd.DataFrame, metric: str | None) -> str:
    """The metric to recompute: ``metric`` when given, else the one the table records on its
    gate rows (``accuracy`` for tables written before it was recorded)."""
    if metric is None:
        recorded = set(rows["metric"]) - {""} if "metric" in rows.columns else set()
        if len(recorded) > 1:
            raise DataError(f"the gate rows record the metrics {sorted(recorded)}: a corrupt table")
        metric = recorded.pop() if recorded else "accuracy"
    if metric not in METRICS:
        raise DataError(f"metric={metric!r}: use one of {list(METRICS)} (or None: the table's)")
    return metric


def _weights(rows: pd.DataFrame, metric: str) -> np.ndarray | None:
    """The gate's per-example weights of ``metric`` over the candidate's first seed's labels."""
    part = rows[rows["gate"] == CANDIDATE]
    labels = part[part["seed"] == part["seed"].iloc[0]]["label"].to_numpy(dtype=int)
    return metrics.weights(metric, labels, int(labels.max()) + 1)


def recompute_verdict(
    source: str | Path | pd.DataFrame,
    *,
    metric: str | None = None,
    interval: str = INTERVAL,
    alpha: float = ALPHA,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
) -> dict[str, Any]:
    """The gate's interval of (candidate − scratch), recomputed from a downloaded
    ``predictions.parquet`` (a path or its DataFrame): the same dict as the verdict's
    ``delta_vs_scratch``, plus ``arm`` and ``phase``. Defaults are the gate's; ``metric``
    (``accuracy`` | ``balanced_accuracy``) overrides the one the table records."""
    frame = _read(source)
    rows = frame[frame["gate"] != ""]
    cand, cand_seeds, cand_index = _matrix(rows, CANDIDATE)
    base, base_seeds, base_index = _matrix(rows, SCRATCH_ROLE)
    if cand_seeds != base_seeds or cand_index != base_index:
        raise DataError(
            f"the gate's candidate has seeds {cand_seeds}, scratch {base_seeds} (or other test "
            "examples): the gate pairs them seed by seed on the same examples"
        )
    phases = set(rows["phase"])
    confirmed = phases == {"confirmation"}
    stats = {"interval": interval, "alpha": alpha, "n_boot": n_boot, "seed": seed}
    weights = _weights(rows, _metric(rows, metric))
    result = scratch_interval(cand, base, confirmed=confirmed, weights=weights, **stats)
    arm = rows.loc[rows["gate"] == CANDIDATE, "arm"].iloc[0]
    return result | {"arm": str(arm), "phase": "confirmation" if confirmed else "selection"}
