"""Controls reported beside transfer results: a classical classifier on raw pixels. (The other
control, a random-init frozen backbone with a trained head, is
`fit_target(init_state=None, mode="linear_probe", ...)`.) scikit-learn is allowed only here."""

from __future__ import annotations

import numpy as np


def pixel_logistic_regression(
    *,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    Cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0),
    max_iter: int = 2000,
) -> dict:
    """Multinomial logistic regression on pixels scaled to [0, 1], standardised per pixel on the
    train set; C (inverse L2) chosen on validation accuracy. Returns val_acc, test_acc, test_pred
    (int64 per test image), test_proba (float32) and the chosen C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def flat(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1).astype(np.float32) / 255.0

    best = None
    for c in Cs:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
        clf.fit(flat(train[0]), train[1])
        acc = float((clf.predict(flat(val[0])) == val[1]).mean())
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    val_acc, c, clf = best
    proba = clf.predict_proba(flat(test[0])).astype(np.float32)
    classes = clf.classes_
    full = np.zeros((len(test[0]), int(max(classes.max() + 1, np.max(test[1]) + 1))), np.float32)
    full[:, classes] = proba
    pred = full.argmax(1).astype(np.int64)
    return {
        "val_acc": val_acc,
        "test_acc": float((pred == test[1]).mean()),
        "test_pred": pred,
        "test_proba": full,
        "C": c,
    }
