"""The transferability scores against their papers' formulas, on cases small enough to work by
hand, and against the public reference implementations on a seeded case (issue 24 item 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from warmstart.models.errors import ModelError, UnknownNameError
from warmstart.ranking import SCORES, ScoreInputs, score_all
from warmstart.ranking import formulas as fm

THETA = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])  # a source head's softmax


def _seeded(n: int = 24, d: int = 5, classes: int = 3, seed: int = 24):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n // classes)
    return rng.normal(size=(n, d)) + 1.5 * np.eye(classes, d)[y], y


# ---- LogME (You et al. 2021) ---------------------------------------------------------------


def _log_marginal(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log p(y | F, alpha, beta) straight from its definition: y ~ N(0, F F'/alpha + I/beta)."""
    cov = f @ f.T / alpha + np.eye(len(y)) / beta
    return float(stats.multivariate_normal(np.zeros(len(y)), cov).logpdf(y))


@pytest.mark.parametrize("n,d", [(24, 5), (6, 10)])  # more examples than features, and fewer
def test_logme_evidence_is_the_marginal_likelihood_at_its_maximum(n, d):
    f, labels = _seeded(n=n, d=d, classes=2)
    y = (labels == 0).astype(float)
    ev = fm.logme_evidence(f, y)
    assert ev.evidence * n == pytest.approx(_log_marginal(f, y, ev.alpha, ev.beta), rel=1e-9)
    # the MacKay fixed point: alpha = gamma / |m|^2, beta = (n - gamma) / |Fm - y|^2
    eig = np.linalg.eigvalsh(f.T @ f)
    gamma = float((ev.beta * eig / (ev.alpha + ev.beta * eig)).sum())
    assert ev.alpha == pytest.approx(gamma / (ev.m @ ev.m), rel=1e-6)
    assert ev.beta == pytest.approx((n - gamma) / ((f @ ev.m - y) ** 2).sum(), rel=1e-6)
    # m is the posterior mean beta (alpha I + beta F'F)^-1 F'y
    a = ev.alpha * np.eye(d) + ev.beta * f.T @ f
    np.testing.assert_allclose(ev.m, ev.beta * np.linalg.solve(a, f.T @ y), rtol=1e-8)
    # and the evidence is maximal there: every nearby (alpha, beta) is lower
    best = _log_marginal(f, y, ev.alpha, ev.beta)
    for da, db in [(1.05, 1), (0.95, 1), (1, 1.05), (1, 0.95)]:
        assert _log_marginal(f, y, ev.alpha * da, ev.beta * db) < best


def test_logme_is_the_mean_over_classes_and_matches_the_reference_implementation():
    f, y = _seeded()
    per_class = [fm.logme_evidence(f, (y == c).astype(float)).evidence for c in range(3)]
    assert fm.logme(f, y) == pytest.approx(np.mean(per_class), rel=1e-12)
    # thuml/LogME LogME.py (_fit_fixed_point, its 1e-3 stopping rule) gives -0.73785498404 here
    assert fm.logme(f, y) == pytest.approx(-0.73785498404, abs=1e-6)


def test_logme_prefers_features_that_separate_the_classes():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    noise = rng.normal(size=(40, 8))
    informative = noise + 3.0 * np.eye(4, 8)[y]
    assert fm.logme(informative, y) > fm.logme(noise, y) + 0.1


# ---- H-score (Bao et al. 2019) and its shrinkage (Ibrahim et al. 2022) ---------------------


def test_hscore_by_hand_in_one_dimension():
    # f = 0, 2, 4, 6 with classes 0, 0, 1, 1: var(f) = (9+1+1+9)/4 = 5, the class means 1, 1, 5, 5
    # have var 4, so H = 4/5. In one dimension Ledoit-Wolf has nothing to shrink towards: a = 0.
    f = np.array([[0.0], [2.0], [4.0], [6.0]])
    y = np.array([0, 0, 1, 1])
    assert fm.hscore(f, y) == pytest.approx(0.8)
    assert fm.ledoit_wolf(f)[1] == 0.0
    assert fm.hscore_shrinkage(f, y) == pytest.approx(0.8)


def test_ledoit_wolf_matches_its_published_estimator():
    from sklearn.covariance import LedoitWolf

    f, _ = _seeded(n=12, d=6)
    cov, a = fm.ledoit_wolf(f)
    ref = LedoitWolf(assume_centered=False).fit(f)
    assert a == pytest.approx(ref.shrinkage_, rel=1e-10)
    assert 0 < a < 1
    np.testing.assert_allclose(cov, ref.covariance_, rtol=1e-10)


def test_shrinkage_hscore_is_ibrahims_formula_and_stays_finite_when_features_outnumber_images():
    f, y = _seeded(n=9, d=20)  # rank-deficient covariance: the plain H-score's weak spot
    cov_a, a = fm.ledoit_wolf(f)
    means = np.stack([f[y == c].mean(axis=0) for c in y])
    cov_g = np.cov(means, rowvar=False, bias=True)
    expected = np.trace(np.linalg.inv(cov_a) @ ((1 - a) * cov_g))
    assert fm.hscore_shrinkage(f, y) == pytest.approx(expected, rel=1e-8)
    # a class-mean direction with no spread inside the classes cannot exceed tr = C - 1 unshrunk
    assert 0 < fm.hscore_shrinkage(f, y) < fm.hscore(f, y) <= 2 + 1e-6


# ---- LEEP (Nguyen et al. 2020) and NCE (Tran et al. 2019) ----------------------------------


def test_leep_by_hand():
    y = np.array([0, 0, 1, 1])
    # P(y, z) = 1/4 sum theta: P(0,0) = .35, P(0,1) = .15, P(1,0) = .1, P(1,1) = .4
    # P(z=0) = .45, P(z=1) = .55: P(0|0) = 7/9, P(0|1) = 3/11, P(1|0) = 2/9, P(1|1) = 8/11
    eep = [
        0.8 * 7 / 9 + 0.2 * 3 / 11,
        0.6 * 7 / 9 + 0.4 * 3 / 11,
        0.3 * 2 / 9 + 0.7 * 8 / 11,
        0.1 * 2 / 9 + 0.9 * 8 / 11,
    ]
    assert fm.leep(THETA, y) == pytest.approx(np.mean(np.log(eep)), rel=1e-12)
    one_hot = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert fm.leep(one_hot, y) == pytest.approx(0.0, abs=1e-12)  # a perfect source: log 1


def test_nce_by_hand():
    # Z = argmax theta = 0, 0, 1, 1. With Y = 0, 1, 1, 1: H(Y|Z) = 1/2 H(1/2, 1/2) + 1/2 * 0
    assert fm.nce(THETA, np.array([0, 1, 1, 1])) == pytest.approx(-0.5 * math.log(2))
    assert fm.nce(THETA, np.array([0, 0, 1, 1])) == pytest.approx(0.0, abs=1e-12)
    # Y independent of Z: H(Y|Z) = H(Y) = log 2
    assert fm.nce(THETA, np.array([0, 1, 0, 1])) == pytest.approx(-math.log(2))


# ---- k-NN and the linear probe -------------------------------------------------------------


def test_knn_leave_one_out_by_hand():
    # three points near 0 degrees (class 0), three near 90 (class 1), one class-0 stray at 78
    angles = np.radians([0, 5, 10, 85, 90, 95, 78])
    f = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    y = np.array([0, 0, 0, 1, 1, 1, 0])
    # 1-NN: only the stray is wrong (its nearest is 85, class 1)
    assert fm.knn_loo(f, y, k=1) == pytest.approx(6 / 7)
    # 2-NN: 85 sees 90 (class 1) then 78 (class 0): a tie, which goes to the nearest, 90: right
    # (breaking it by the lower class would make it wrong: 5/7). The stray sees 85, 90: wrong.
    assert fm.knn_loo(f, y, k=2) == pytest.approx(6 / 7)
    # 6-NN: every point sees all the others. 0, 5, 10 see three of each class: the tie goes to
    # the nearest, class 0: right. 85, 90, 95 see four of class 0: wrong. The stray ties, and its
    # nearest, 85, is class 1: wrong
    assert fm.knn_loo(f, y, k=6) == pytest.approx(3 / 7)
    # 5-NN: the class-0 points near 0 see the other two, the stray and two of class 1 -> 3 vs 2
    # right; 85 sees 90, 95, 78 and two class-0 points -> class 0 (3 vs 2): wrong, likewise 90, 95
    assert fm.knn_loo(f, y, k=5) == pytest.approx(3 / 7)


def test_linear_probe_fits_on_train_and_scores_on_validation():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 6)
    f = rng.normal(size=(18, 4)) * 0.1 + 4.0 * np.eye(3, 4)[y]
    fv = rng.normal(size=(18, 4)) * 0.1 + 4.0 * np.eye(3, 4)[y]
    assert fm.linear_probe_accuracy(f, y, fv, y) == 1.0
    assert fm.linear_probe_accuracy(f, y, fv, (y + 1) % 3) == 0.0
    assert fm.linear_probe_accuracy(f, y, fv, np.where(y == 2, 0, y)) == pytest.approx(12 / 18)


# ---- the registry and score_all ------------------------------------------------------------


def _inputs(**kw) -> ScoreInputs:
    f, y = _seeded(n=24, d=5)
    return ScoreInputs(f[::2], y[::2], f[1::2], y[1::2], **kw)


def test_score_all_applies_each_score_to_train_and_validation_only():
    f, y = _seeded(n=24, d=5)
    probs = np.random.default_rng(2).dirichlet(np.ones(7), size=24)  # a 7-class source head
    inputs = _inputs(train_source_probs=probs[::2], val_source_probs=probs[1::2], source_size=500)
    scores = score_all(inputs)
    assert list(scores) == [
        "logme", "hscore", "leep", "nce", "knn", "linear_probe", "random", "largest_source"
    ]  # fmt: skip
    both, labels = inputs.features, inputs.labels
    assert scores["logme"] == pytest.approx(fm.logme(both, labels))
    assert scores["hscore"] == pytest.approx(fm.hscore_shrinkage(both, labels))
    # LEEP and NCE: the head's softmax over the k-shot TRAIN images, as the papers define them
    assert scores["leep"] == pytest.approx(fm.leep(probs[::2], y[::2]), rel=1e-12)
    assert scores["nce"] == pytest.approx(fm.nce(probs[::2], y[::2]), rel=1e-12)
    assert scores["leep"] != pytest.approx(fm.leep(inputs.source_probs, labels))  # can fail
    assert scores["knn"] == pytest.approx(fm.knn_loo(both, labels))
    assert scores["linear_probe"] == fm.linear_probe_accuracy(f[::2], y[::2], f[1::2], y[1::2])
    assert scores["largest_source"] == 500.0
    assert 0.0 <= scores["random"] < 1.0


def test_leep_and_nce_never_read_validation():
    f, y = _seeded(n=24, d=5)
    probs = np.random.default_rng(2).dirichlet(np.ones(7), size=24)
    other = np.random.default_rng(3).dirichlet(np.ones(7), size=12)
    a = score_all(_inputs(train_source_probs=probs[::2], val_source_probs=probs[1::2]))
    b = score_all(_inputs(train_source_probs=probs[::2], val_source_probs=other))
    assert (a["leep"], a["nce"]) == (b["leep"], b["nce"])
    c = score_all(_inputs(train_source_probs=other, val_source_probs=probs[1::2]))
    assert c["leep"] != a["leep"]  # they do read train


def test_scores_that_do_not_apply_are_none():
    scores = score_all(_inputs(), ["leep", "nce", "largest_source", "logme"])
    assert scores["leep"] is None and scores["nce"] is None and scores["largest_source"] is None
    assert isinstance(scores["logme"], float)


def test_random_is_reproducible_per_seed_and_differs_between_candidates():
    f, y = _seeded(n=24, d=5)
    a = ScoreInputs(f[::2], y[::2], f[1::2], y[1::2], seed=3)
    b = ScoreInputs(f[::2] + 1, y[::2], f[1::2] + 1, y[1::2], seed=3)
    ra = SCORES.get("random").compute(a)
    assert SCORES.get("random").compute(a) == ra
    assert SCORES.get("random").compute(b) != ra
    assert SCORES.get("random").compute(ScoreInputs(f[::2], y[::2], f[1::2], y[1::2], seed=4)) != ra


def test_an_unknown_score_names_the_valid_ones():
    with pytest.raises(UnknownNameError, match="unknown score 'logmee'; valid scores: logme"):
        score_all(_inputs(), ["logmee"])


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(val_features=np.zeros((12, 3))), "extract both with the same backbone"),
        (dict(train_labels=np.zeros(5, int)), "use \\(n, d\\) and \\(n,\\)"),
        (dict(val_labels=np.full(12, -1)), "ints 0..C-1"),
        (dict(train_source_probs=np.ones((12, 2))), "give both or neither"),
        (dict(train_features=np.full((12, 5), np.nan)), "NaN or inf"),
    ],
)
def test_bad_inputs_are_refused_in_one_line(change, message):
    f, y = _seeded(n=24, d=5)
    base = dict(
        train_features=f[::2], train_labels=y[::2], val_features=f[1::2], val_labels=y[1::2]
    )
    with pytest.raises(ModelError, match=message):
        ScoreInputs(**{**base, **change})
