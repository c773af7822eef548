"""Evaluation: the only stage that reads the test split. Every arm and seed is scored per
example, so the gate's paired statistics can be recomputed from the arrays."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from warmstart import models
from warmstart.contracts import PIXEL_CONTROL, ArmResult, ArmScores, Evaluation, Job
from warmstart.stages.data import load_target
from warmstart.stages.training import load_arm_model


def evaluate(results: Sequence[ArmResult], job: Job) -> Evaluation:
    """Test-split predictions for every arm, plus the pixel logistic-regression control."""
    ds, splits = load_target(job)
    x_test, y_test = ds.images[splits.test], ds.labels[splits.test]
    t0 = time.perf_counter()
    rows: dict[str, dict] = {}
    for res in results:
        pred = models.predict_proba(load_arm_model(res, job), x_test).argmax(1)
        row = rows.setdefault(res.arm, _empty(res.arm, res.spec.strategy, res.spec.mode))
        row["seeds"].append(res.seed)
        row["val_acc"].append(res.val_acc)
        row["keys"].append(res.key)
        row["seconds"].append(res.stage.seconds)
        _score(row, pred, y_test)
    t_lr = time.perf_counter()
    lr = models.pixel_logistic_regression(
        train=(ds.images[splits.train], ds.labels[splits.train]),
        val=(ds.images[splits.val], ds.labels[splits.val]),
        test=(x_test, y_test),
    )
    row = _empty(PIXEL_CONTROL, None, "logistic_regression")
    row.update(seeds=[0], val_acc=[float(lr["val_acc"])], seconds=[time.perf_counter() - t_lr])
    _score(row, np.asarray(lr["test_pred"]), y_test)
    rows[PIXEL_CONTROL] = row
    return Evaluation(
        arms={name: ArmScores(**row) for name, row in rows.items()},
        y_test=y_test.tolist(),
        test_index=splits.test.tolist(),
        classes=list(ds.classes),
        seconds=time.perf_counter() - t0,
    )


def _empty(arm: str, strategy: str | None, mode: str) -> dict:
    names = ("seeds", "val_acc", "test_acc", "correct", "pred", "keys", "seconds")
    return {"arm": arm, "strategy": strategy, "mode": mode, **{n: [] for n in names}}


def _score(row: dict, pred: np.ndarray, y_test: np.ndarray) -> None:
    correct = pred == y_test
    row["test_acc"].append(float(correct.mean()))
    row["correct"].append(correct.tolist())
    row["pred"].append(pred.tolist())
