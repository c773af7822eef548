"""Transferability scores: rank candidate sources from one pass of frozen features, no training.

A score reads a `ScoreInputs` (one candidate source's frozen features of the target's k-shot
train and validation images, never test, and the source head's softmax where it has one) and
returns one number, higher = better, or None where it does not apply (no head for LEEP and NCE,
no size for `largest_source`). Scores are registered by name in `SCORES` (the project's generic
`Registry`); a plug-in adds one with `@register_score("name")`.

The feature statistics (LogME, H-score) read the train and validation images together: all the
labelled non-test data; `knn` is leave-one-out over the same union; `linear_probe` fits on
train and is scored on validation. LEEP and NCE read the source head's softmax over the k-shot
TRAIN images only, as their papers define them (the empirical joint of source and target labels
over the target's training set).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from warmstart.models.errors import ModelError
from warmstart.models.registry import Registry

from . import formulas

# The score `warmstart rank` and `--top` use when none is named: the one with the highest mean
# weighted tau on the ranking benchmark's two selection targets (benchmarks/source_ranking.py,
# BENCHMARKS.md section 13 "Which source?"), chosen before the held-out targets were looked at.
DEFAULT_SCORE = "knn"


@dataclass(frozen=True)
class ScoreInputs:
    """What a score may read about one candidate source on one target (validation-only data)."""

    train_features: np.ndarray  # (n_train, d) frozen features of the target's k-shot TRAIN images
    train_labels: np.ndarray  # (n_train,) ints 0..C-1
    val_features: np.ndarray  # (n_val, d) of the target's VALIDATION images (never test)
    val_labels: np.ndarray
    train_source_probs: np.ndarray | None = None  # (n_train, C_src) softmax of the source's head
    val_source_probs: np.ndarray | None = None
    source_size: int | None = None  # images the source learned from ('largest source first')
    seed: int = 0  # for 'random'

    def __post_init__(self) -> None:
        _check_pair("train", self.train_features, self.train_labels)
        _check_pair("val", self.val_features, self.val_labels)
        if self.train_features.shape[1] != self.val_features.shape[1]:
            raise ModelError(
                f"train features have {self.train_features.shape[1]} dimensions and val features "
                f"{self.val_features.shape[1]}; extract both with the same backbone"
            )
        if (self.train_source_probs is None) != (self.val_source_probs is None):
            raise ModelError("source probs given for only one of train/val; give both or neither")
        for split, p, n in (
            ("train", self.train_source_probs, len(self.train_labels)),
            ("val", self.val_source_probs, len(self.val_labels)),
        ):
            if p is not None and (p.ndim != 2 or len(p) != n):
                raise ModelError(
                    f"{split}_source_probs has shape {p.shape}; use ({n}, source classes)"
                )

    @property
    def features(self) -> np.ndarray:
        """Train and validation features, stacked (train first)."""
        return np.concatenate([self.train_features, self.val_features]).astype(np.float64)

    @property
    def labels(self) -> np.ndarray:
        return np.concatenate([self.train_labels, self.val_labels]).astype(np.int64)

    @property
    def source_probs(self) -> np.ndarray | None:
        if self.train_source_probs is None or self.val_source_probs is None:
            return None
        return np.concatenate([self.train_source_probs, self.val_source_probs])


def _check_pair(split: str, features: np.ndarray, labels: np.ndarray) -> None:
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise ModelError(
            f"{split} features {features.shape} and labels {labels.shape}; use (n, d) and (n,)"
        )
    if len(labels) == 0 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ModelError(f"{split} labels must be a non-empty array of ints 0..C-1")
    if not np.isfinite(features).all():
        raise ModelError(f"{split} features hold NaN or inf; check the backbone's weights")


class Score:
    """A transferability score: `compute(inputs)` -> float (higher = better) or None."""

    name: str
    paper: str = ""

    @staticmethod
    def compute(inputs: ScoreInputs) -> float | None:
        raise NotImplementedError


SCORES: Registry[Score] = Registry("score")


def register_score(name: str) -> Callable[[type[Score]], type[Score]]:
    """Class decorator: make a Score subclass available to `score_all` by name."""
    return SCORES.register(name)


class _Statistic(Score):
    """A published statistic: `formula(x, labels)`, where x is the stacked train+validation
    features (all the labelled non-test data), or, for the head's scores, the source head's
    softmax over the train images with their labels (None without a head)."""

    formula: Callable[[np.ndarray, np.ndarray], float]
    reads_source_probs: bool = False

    @classmethod
    def compute(cls, inputs: ScoreInputs) -> float | None:  # type: ignore[override]
        if cls.reads_source_probs:
            probs = inputs.train_source_probs
            return None if probs is None else cls.formula(probs, inputs.train_labels)
        return cls.formula(inputs.features, inputs.labels)


def _statistic(name: str, cls: str, formula: Callable, paper: str, probs: bool = False) -> None:
    """Register `cls`, the `_Statistic` of `formula` (of the head's softmax on train when
    `probs`)."""
    attrs = dict(paper=paper, formula=staticmethod(formula), reads_source_probs=probs)
    register_score(name)(type(cls, (_Statistic,), attrs))


# in the registration order `score_all` and the ranking table keep
_statistic("logme", "LogME", formulas.logme, "You et al. 2021")
_HSCORE = "Bao et al. 2019; shrinkage: Ibrahim et al. 2022"
_statistic("hscore", "ShrinkageHScore", formulas.hscore_shrinkage, _HSCORE)
_statistic("leep", "LEEP", formulas.leep, "Nguyen et al. 2020", probs=True)
_statistic("nce", "NCE", formulas.nce, "Tran et al. 2019", probs=True)
_KNN = "leave-one-out k-NN accuracy (Agostinelli et al. 2022's baseline)"
_statistic("knn", "KNN", formulas.knn_loo, _KNN)


@register_score("linear_probe")
class LinearProbe(Score):
    paper = "logistic regression on train, accuracy on validation"

    @staticmethod
    def compute(inputs: ScoreInputs) -> float:
        return formulas.linear_probe_accuracy(
            inputs.train_features, inputs.train_labels, inputs.val_features, inputs.val_labels
        )


@register_score("random")
class RandomOrder(Score):
    paper = "baseline: a random order, reproducible from the seed"

    @staticmethod
    def compute(inputs: ScoreInputs) -> float:
        # the candidate's own features pick its draw, so one seed orders candidates at random
        digest = zlib.crc32(np.ascontiguousarray(inputs.train_features).tobytes())
        return float(np.random.default_rng([inputs.seed, digest]).random())


@register_score("largest_source")
class LargestSource(Score):
    paper = "baseline: the source that learned from the most images first"

    @staticmethod
    def compute(inputs: ScoreInputs) -> float | None:
        return None if inputs.source_size is None else float(inputs.source_size)


def score_all(inputs: ScoreInputs, names: Sequence[str] | None = None) -> dict[str, float | None]:
    """Every named score (all registered ones by default) of one candidate: higher = better,
    None where a score does not apply. An unknown name raises, listing the valid ones."""
    chosen = list(SCORES.names() if names is None else names)
    classes = {name: SCORES.get(name) for name in chosen}
    return {name: cls.compute(inputs) for name, cls in classes.items()}
