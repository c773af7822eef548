"""The transferability scores' numerical cores, each from its paper, on plain numpy arrays.

Every function takes frozen features (or a source head's softmax) of labelled target images and
returns one number, higher = the source should transfer better:

- `logme`: You et al. 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer
  Learning", Algorithm 1 (evidence maximisation of a Bayesian linear model per class, by the
  MacKay fixed point), the mean over classes of the log evidence per example.
- `hscore_shrinkage`: Bao et al. 2019, "An Information-Theoretic Approach to Transferability in
  Task Transfer Learning" (H(f) = tr(cov(f)^-1 cov(E[f|y]))), with Ibrahim et al. 2022, "Newer is
  not always better" (cov(f) replaced by its Ledoit-Wolf shrinkage, cov(E[f|y]) scaled by 1 - a).
- `leep`: Nguyen et al. 2020, "LEEP: A New Measure to Evaluate Transferability", eq. (2).
- `nce`: Tran et al. 2019, "Transferability and Hardness of Supervised Classification Tasks":
  -H(Y|Z), Z the source head's hard label.
- `knn_loo`: leave-one-out k-nearest-neighbour accuracy (the baseline of Agostinelli et al. 2022).
- `linear_probe_accuracy`: L2 logistic regression fitted on train, accuracy on validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

LOGME_MAX_ITER = 1000  # each step is O(min(n, d)); n < d can take hundreds
LOGME_TOL = 1e-8  # relative change of alpha/beta that ends the fixed point
KNN_NEIGHBOURS = 5  # fixed before the benchmark looked at any target
PROBE_L2 = 1e-2  # per-example loss + PROBE_L2/2 |W|^2 on standardised features; fixed up front


@dataclass(frozen=True)
class Evidence:
    """One class's fixed point: prior precision alpha, noise precision beta, posterior mean m and
    the log evidence per example."""

    alpha: float
    beta: float
    m: np.ndarray
    evidence: float


def logme_evidence(
    f: np.ndarray, y: np.ndarray, svd: tuple[np.ndarray, ...] | None = None
) -> Evidence:
    """Maximise p(y | F, alpha, beta) of y = F w + noise, w ~ N(0, 1/alpha), noise ~ N(0, 1/beta)
    (You et al. 2021, Algorithm 1), through the SVD of F so that it costs O(n d min(n, d)).

    log p = n/2 log beta + d/2 log alpha - n/2 log 2pi - beta/2 |Fm - y|^2 - alpha/2 |m|^2
            - 1/2 log |alpha I + beta F'F|, with m = beta A^-1 F'y.
    The log-determinant counts the d - rank(F) zero eigenvalues of F'F (log alpha each), so the
    value is the true evidence for any n and d. `svd`: F's thin SVD, when the caller has it."""
    n, d = f.shape
    u, s, vt = np.linalg.svd(f, full_matrices=False) if svd is None else svd
    sigma = s**2  # the non-zero part of F'F's spectrum (min(n, d) values)
    x = u.T @ y  # y in the left singular basis
    x2 = x**2
    residual_outside = max(float(y @ y - x2.sum()), 0.0)  # |y|^2 outside F's column space
    alpha, beta = 1.0, 1.0
    for _ in range(LOGME_MAX_ITER):
        lam = alpha / beta
        gamma = float((sigma / (sigma + lam)).sum())
        m2 = float((sigma * x2 / (sigma + lam) ** 2).sum())  # |m|^2
        res2 = float((x2 * (lam / (sigma + lam)) ** 2).sum()) + residual_outside  # |Fm - y|^2
        new_alpha = gamma / max(m2, 1e-12)
        new_beta = (n - gamma) / max(res2, 1e-12)
        done = abs(new_alpha / new_beta - lam) <= LOGME_TOL * lam
        alpha, beta = new_alpha, new_beta
        if done:
            break
    lam = alpha / beta
    m = vt.T @ (np.sqrt(sigma) * x / (sigma + lam))
    m2 = float(m @ m)
    res2 = float((x2 * (lam / (sigma + lam)) ** 2).sum()) + residual_outside
    logdet = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
    log_p = (
        n / 2 * np.log(beta)
        + d / 2 * np.log(alpha)
        - n / 2 * np.log(2 * np.pi)
        - beta / 2 * res2
        - alpha / 2 * m2
        - logdet / 2
    )
    return Evidence(alpha=alpha, beta=beta, m=m, evidence=float(log_p) / n)


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of a classification target: the mean over classes of the evidence of the one-hot
    column of that class."""
    f = np.asarray(features, dtype=np.float64)
    svd = np.linalg.svd(f, full_matrices=False)  # once: it is most of the cost
    return float(
        np.mean(
            [
                logme_evidence(f, (labels == c).astype(float), svd).evidence
                for c in np.unique(labels)
            ]
        )
    )


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance (1 - a) S + a mu I of x (n, d), S the ML covariance
    (Ledoit & Wolf 2004, in scikit-learn's estimator's form), and the shrinkage a."""
    n, d = x.shape
    xc = x - x.mean(axis=0)
    cov = xc.T @ xc / n
    mu = float(np.trace(cov)) / d
    x2 = xc**2
    beta_sum = float((x2.T @ x2).sum())
    delta_sum = float((cov**2).sum())
    beta = (beta_sum / n - delta_sum) / (d * n)
    delta = (delta_sum - 2 * mu * float(np.trace(cov)) + d * mu**2) / d
    shrink = 0.0 if delta <= 0 else min(beta, delta) / delta
    return (1 - shrink) * cov + shrink * mu * np.eye(d), shrink


def class_means(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each row replaced by the mean of its class: E[f | y] per example."""
    g = np.empty_like(features)
    for c in np.unique(labels):
        g[labels == c] = features[labels == c].mean(axis=0)
    return g


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """Bao et al. 2019: tr(cov(f)^+ cov(E[f|y])), ML covariances (pseudo-inverse: rank-deficient
    features are common at k-shot sizes, which is why the shrinkage version exists)."""
    f = np.asarray(features, dtype=np.float64)
    g = class_means(f, labels)
    cov_f = np.atleast_2d(np.cov(f, rowvar=False, bias=True))
    cov_g = np.atleast_2d(np.cov(g, rowvar=False, bias=True))
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ cov_g))


def hscore_shrinkage(features: np.ndarray, labels: np.ndarray) -> float:
    """Ibrahim et al. 2022, eq. (4): tr(cov_a(f)^-1 (1 - a) cov(E[f|y])), cov_a the Ledoit-Wolf
    shrunk covariance and a its shrinkage."""
    f = np.asarray(features, dtype=np.float64)
    cov_a, a = ledoit_wolf(f)
    cov_g = np.atleast_2d(np.cov(class_means(f, labels), rowvar=False, bias=True))
    return float(np.trace(np.linalg.pinv(cov_a, rcond=1e-15) @ ((1 - a) * cov_g)))


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """Nguyen et al. 2020, eq. (2): the mean log-likelihood of the empirical conditional predictor
    p(y | x) = sum_z P(y | z) theta(x)_z, with P(y, z) = 1/n sum_{i: y_i = y} theta(x_i)_z."""
    theta = np.asarray(source_probs, dtype=np.float64)
    n = len(theta)
    joint = np.zeros((int(labels.max()) + 1, theta.shape[1]))
    np.add.at(joint, labels, theta / n)
    cond = joint / np.maximum(joint.sum(axis=0, keepdims=True), 1e-300)  # P(y | z)
    eep = (theta @ cond.T)[np.arange(n), labels]
    return float(np.log(np.maximum(eep, 1e-300)).mean())


def nce(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """Tran et al. 2019: NCE = -H(Y | Z) = sum_{y,z} P(y, z) log P(y | z), Z = argmax of the source
    head, P the empirical joint of (y_i, z_i)."""
    z = np.asarray(source_probs).argmax(axis=1)
    n = len(z)
    joint = np.zeros((int(labels.max()) + 1, int(z.max()) + 1))
    np.add.at(joint, (labels, z), 1.0 / n)
    p_z = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / np.broadcast_to(p_z, joint.shape)[nz])).sum())


def knn_loo(features: np.ndarray, labels: np.ndarray, *, k: int = KNN_NEIGHBOURS) -> float:
    """Leave-one-out k-NN accuracy by cosine similarity: each example is classified by the
    majority of its k most similar others (a tie goes to the tied class of the nearest one)."""
    f = np.asarray(features, dtype=np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    k = min(k, len(f) - 1)
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    neighbour_labels = labels[order]
    n_classes = int(labels.max()) + 1
    votes = np.zeros((len(f), n_classes))
    np.add.at(votes, (np.repeat(np.arange(len(f)), k), neighbour_labels.ravel()), 1.0)
    # tie-break: the nearest neighbour's rank, as a fraction below one vote
    first_rank = np.full((len(f), n_classes), k, dtype=np.float64)
    for r in range(k - 1, -1, -1):
        first_rank[np.arange(len(f)), neighbour_labels[:, r]] = r
    pred = np.argmax(votes - first_rank / (k + 1), axis=1)
    return float((pred == labels).mean())


def _logreg_loss(
    w_flat: np.ndarray, x: np.ndarray, y1: np.ndarray, l2: float
) -> tuple[float, np.ndarray]:
    d1, c = x.shape[1], y1.shape[1]
    w = w_flat.reshape(d1, c)
    logits = x @ w
    logp = logits - special.logsumexp(logits, axis=1, keepdims=True)
    n = len(x)
    loss = -(y1 * logp).sum() / n + 0.5 * l2 * (w[:-1] ** 2).sum()
    grad = x.T @ (np.exp(logp) - y1) / n
    grad[:-1] += l2 * w[:-1]
    return float(loss), grad.ravel()


def linear_probe_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    *,
    l2: float = PROBE_L2,
) -> float:
    """Multinomial logistic regression (L-BFGS, L2 on the weights, not the bias) on features
    standardised with the train set's mean and deviation; accuracy on validation."""
    mean = train_features.mean(axis=0)
    std = train_features.std(axis=0) + 1e-6
    n_classes = int(max(train_labels.max(), val_labels.max())) + 1

    def design(f: np.ndarray) -> np.ndarray:
        z = (np.asarray(f, dtype=np.float64) - mean) / std
        return np.hstack([z, np.ones((len(z), 1))])

    x = design(train_features)
    y1 = np.eye(n_classes)[train_labels]
    w0 = np.zeros(x.shape[1] * n_classes)
    fit = optimize.minimize(
        _logreg_loss, w0, args=(x, y1, l2), jac=True, method="L-BFGS-B", options={"maxiter": 500}
    )
    pred = (design(val_features) @ fit.x.reshape(x.shape[1], n_classes)).argmax(axis=1)
    return float((pred == val_labels).mean())
