"""The ranking's one pass per candidate: frozen features of the target's k-shot training draw
(seed 0, the draw every arm's seed 0 trains on) and its validation images, never its test
images, with the softmax of the candidate's own classifier over the same features where it has
one (LEEP, NCE), then every score (``warmstart.ranking.scores``). The candidate's weights and
head come from its source provider (``SourceModel``): nothing here resolves a source spec."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from warmstart import models
from warmstart.contracts import Job, SourceModel
from warmstart.data.splits import capped_val
from warmstart.models.features import extract
from warmstart.models.features import source_head as head_from_state
from warmstart.ranking import scores
from warmstart.ranking.order import CandidateScore
from warmstart.stages.config import device
from warmstart.stages.data import load_target
from warmstart.stages.weights import load_weights


@dataclass(frozen=True)
class Features:
    train: np.ndarray
    val: np.ndarray
    train_probs: np.ndarray | None
    val_probs: np.ndarray | None
    seconds: float


def frozen_features(
    model: torch.nn.Module,
    images: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    dev: str,
    head: torch.nn.Module | None = None,
) -> Features:
    """Features of the images at ``train`` and ``val`` only (the rest of ``images``, test, is
    never read), and the softmax of the source's own classifier ``head`` over them, computed in
    the same pass from the same features (None without a head)."""
    model = model.to(dev).eval()
    head = head.to(dev) if head is not None else None
    t0 = time.perf_counter()
    ftr, ptr = extract(model, torch.as_tensor(np.asarray(images[train])).to(dev), head=head)
    fval, pval = extract(model, torch.as_tensor(np.asarray(images[val])).to(dev), head=head)
    return Features(ftr, fval, ptr, pval, time.perf_counter() - t0)


def score_features(
    feats: Features, labels: np.ndarray, train: np.ndarray, val: np.ndarray, source_size: int
) -> dict[str, float | None]:
    inputs = scores.ScoreInputs(
        train_features=feats.train,
        train_labels=np.asarray(labels)[train],
        val_features=feats.val,
        val_labels=np.asarray(labels)[val],
        train_source_probs=feats.train_probs,
        val_source_probs=feats.val_probs,
        source_size=source_size or None,
        seed=0,
    )
    return {k: (None if v is None else float(v)) for k, v in scores.score_all(inputs).items()}


def trunk(source: SourceModel, job: Job) -> torch.nn.Module:
    """The candidate's backbone at the target's geometry with its source weights (trunk only)."""
    target = job.target
    model = models.get_backbone(
        source.backbone,
        in_channels=target.channels,
        num_classes=target.num_classes,
        image_size=tuple(target.size),
    )
    models.load_trunk(model, load_weights(source.weights_uri))
    return model


def source_head(source: SourceModel, width: int) -> torch.nn.Module | None:
    """The candidate's own classifier over its source's classes (``SourceModel.head_uri``):
    None for a source without one (label-free pretraining, a trunk-only checkpoint)."""
    if not source.head_uri:
        return None
    return head_from_state(load_weights(source.head_uri), width)


def score_candidate(source: SourceModel, job: Job, name: str) -> CandidateScore:
    """Every score of one candidate on the job's k-shot train draw and validation images."""
    ds, splits = load_target(job)
    train, val = splits.train, capped_val(splits, ds.labels, job.params.val_per_class)
    dev = str(models.select_device(device(job.params)))
    model = trunk(source, job)
    head = source_head(source, model.num_features)
    feats = frozen_features(model, ds.images, train, val, dev, head)
    stage = source.stage
    return CandidateScore(
        name=name,
        spec=job.source.spec,
        label=source.label,
        provider=source.provider,
        scores=score_features(feats, ds.labels, train, val, source.images),
        extract_seconds=round(feats.seconds, 3),
        pretrain_seconds=0.0 if stage is None or stage.reused else round(stage.seconds, 1),
        pretrain_reused=bool(stage is not None and stage.reused),
        images={"train": len(train), "val": len(val)},
    )
