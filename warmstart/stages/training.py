"""Target training: transfer arms, the scratch baseline and the random-init control.

Scratch is a ``finetune`` from random init: the same backbone, epochs, steps, augmentation and
optimiser as the transfer arms, with a learning-rate × weight-decay search as large as the
transfer side's (one configuration per transfer arm), chosen on validation. The control freezes a
random-init trunk and trains the head. Every seed but 0 trains on its own k-shot draw; the
chosen arm and scratch are trained again on fresh confirmation seeds for the gate.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from warmstart import models, timing
from warmstart.contracts import (
    RANDOM_INIT_CONTROL,
    SCRATCH,
    TARGET_POOL_CONTROL,
    ArmResult,
    ArmSpec,
    Job,
    SourceModel,
)
from warmstart.data.splits import capped_val, seed_train
from warmstart.params import PipelineParams
from warmstart.runstore import RunStore, run_key
from warmstart.stages.config import config_dict, device, threads
from warmstart.stages.data import index_hash, load_target
from warmstart.stages.sources import CHECKPOINT, LearnedFrom, write_learned
from warmstart.stages.weights import (
    Report,
    epoch_uploads,
    load_weights,
    mark_reused,
    no_report,
    save_state,
    stage_record,
)

WEIGHTS = "model.safetensors"


CONFIRM_SEED0 = 1000  # confirmation seeds are 1000, 1001, …: never a selection seed (<= 20)


def train_config(
    params: PipelineParams, seed: int, spec: ArmSpec | None = None
) -> models.TrainConfig:
    """The arm's training config: the defaults, or a point of scratch's search grid."""
    cfg = models.TrainConfig(
        epochs=params.finetune_epochs, seed=seed, device=device(params), num_threads=threads(params)
    )
    if spec is not None and spec.lr is not None:
        cfg = replace(cfg, lr=spec.lr)
    if spec is not None and spec.weight_decay is not None:
        cfg = replace(cfg, weight_decay=spec.weight_decay)
    return cfg


def confirmation_seeds(params: PipelineParams) -> list[int]:
    return [CONFIRM_SEED0 + i for i in range(params.confirm_seeds)]


def scratch_grid(params: PipelineParams, labels: list[str]) -> list[tuple[float, float]]:
    """Scratch's search: the first (lr, weight decay) points of the grid, the default first, as
    many as there are transfer arms (strategies × modes), so both sides search alike. With more
    transfer arms than the grid has points (several sources, many strategies), the learning-rate
    axis is refined (``finer_lrs``) until scratch has as many configurations as transfer."""
    n = max(1, len(labels) * len(params.transfer_modes))
    wds, lrs = list(params.scratch_weight_decays), list(params.scratch_lrs)
    grid = [(lr, wd) for wd in wds for lr in lrs]
    while len(grid) < n:
        new = [lr for lr in finer_lrs(lrs) if lr not in lrs]
        if not new:  # rates 3 significant digits apart: no finer grid to give
            break
        grid += [(lr, wd) for wd in wds for lr in new]
        lrs += new
    return grid[:n]


def finer_lrs(lrs: list[float]) -> list[float]:
    """The learning rates one refinement adds: the geometric midpoint of each pair of neighbours
    (3 significant digits), or, from a single rate, a half decade either side."""
    ordered = sorted(set(lrs))
    if len(ordered) < 2:
        return [float(f"{ordered[0] / 10**0.5:.3g}"), float(f"{ordered[0] * 10**0.5:.3g}")]
    return [float(f"{(a * b) ** 0.5:.3g}") for a, b in zip(ordered, ordered[1:], strict=False)]


def _scratch_spec(point: tuple[float, float], seed: int, first: bool) -> ArmSpec:
    """The default point is the arm ``scratch``; the others ``scratch/lr=…,wd=…``."""
    lr, wd = point
    name = SCRATCH if first else f"{SCRATCH}/lr={lr:g},wd={wd:g}"
    return ArmSpec(name, "finetune", seed, "train-scratch-baseline", lr=lr, weight_decay=wd)


def arm_specs(params: PipelineParams, labels: list[str]) -> list[ArmSpec]:
    """Every arm at one k: source label × mode × seed, scratch's search grid × seed, then the
    control per seed (the selection seeds 0..seeds-1)."""
    seeds = range(params.seeds)
    specs = [
        ArmSpec(f"{label}/{mode}", mode, seed, "finetune-target", strategy=label)
        for label in labels
        for mode in params.transfer_modes
        for seed in seeds
    ]
    grid = scratch_grid(params, labels)
    specs += [_scratch_spec(p, s, i == 0) for i, p in enumerate(grid) for s in seeds]
    specs += [ArmSpec(RANDOM_INIT_CONTROL, "linear_probe", s, "train-control") for s in seeds]
    return specs


def confirmation_specs(
    params: PipelineParams, candidate: ArmSpec, scratch: ArmSpec, pool_control: bool
) -> list[ArmSpec]:
    """The chosen arm and scratch's chosen configuration (named ``scratch``) on the fresh
    confirmation seeds, and, when asked, the chosen arm pretrained on the target pool only."""
    specs = []
    for seed in confirmation_seeds(params):
        specs.append(replace(candidate, seed=seed, phase="confirmation"))
        specs.append(replace(scratch, arm=SCRATCH, seed=seed, phase="confirmation"))
        if pool_control:
            arm = f"{TARGET_POOL_CONTROL}/{candidate.arm}"
            specs.append(replace(candidate, arm=arm, seed=seed, phase="confirmation"))
    return specs


def finetune_target(
    spec: ArmSpec, source: SourceModel | None, job: Job, report: Report = no_report
) -> ArmResult:
    """Train one arm on the k-shot target set (cached in S3 by the hashes of its inputs)."""
    params, target = job.params, job.target
    cfg = train_config(params, spec.seed, spec)
    with timing.span("load"):
        ds, splits = load_target(job)
    train = seed_train(splits, ds.labels, spec.seed)
    val = capped_val(splits, ds.labels, params.val_per_class)
    inputs = {
        "arm": spec.arm,
        "pretrain": source.key if source else None,
        "mode": spec.mode,
        "seed": spec.seed,
        "backbone": params.backbone,
        "target": target.hash,
        "split": job.split.hash,
        "config": config_dict(cfg),
    }
    if train is not splits.train:  # a seed's own k-shot draw (seed 0 keeps its old run key)
        inputs["train_index"] = index_hash(train)
    if val is not splits.val:
        inputs["val_index"] = index_hash(val)
    store = RunStore(run_key("finetune", inputs))
    with timing.span("load"):
        done = store.finished()
        if done is not None:
            return mark_reused(ArmResult.from_dict(done))
        stage_dir = store.pull()
        init_state = load_weights(source.weights_uri) if source else None
        train_set, val_set = (ds.images[train], ds.labels[train]), (ds.images[val], ds.labels[val])
    with timing.span("train"):
        fit = _fit(spec, job, cfg, init_state, train_set, val_set, store, stage_dir, report)
    with timing.span("upload"):
        return _store_arm(spec, source, job, cfg, fit, store, stage_dir)


def _fit(spec, job, cfg, init_state, train_set, val_set, store, stage_dir, report):
    target = job.target
    with epoch_uploads(store, stage_dir / "ckpt", report) as on_epoch_end:
        return models.fit_target(
            backbone=job.params.backbone,
            init_state=init_state,
            mode=spec.mode,
            in_channels=target.channels,
            image_size=tuple(target.size),
            num_classes=target.num_classes,
            train=train_set,
            val=val_set,
            config=cfg,
            checkpoint_dir=stage_dir / "ckpt",
            on_epoch_end=on_epoch_end,
        )


def _store_arm(spec, source, job, cfg, fit, store, stage_dir) -> ArmResult:
    """The trained arm's weights, ``learned.json`` and, last, its ``result.json``."""
    save_state(stage_dir / WEIGHTS, fit.model.state_dict())
    store.push(write_learned(stage_dir, learned(source, job)))
    result = ArmResult(
        spec=spec,
        weights_uri=store.push(stage_dir / WEIGHTS),
        val_acc=float(fit.best_val_acc),
        best_epoch=int(fit.best_epoch),
        source_key=source.key if source else None,
        images_per_second=float(getattr(fit, "images_per_second", 0.0) or 0.0),
        stage=stage_record(store, fit, config_dict(cfg)),
    )
    store.finish(result.to_dict())
    return result


def learned(source: SourceModel | None, job: Job) -> list[LearnedFrom]:
    """What a fine-tuned arm's weights learned from: the run's labelled target data (its split)
    and what its source was pretrained on."""
    seen = [LearnedFrom(f"{CHECKPOINT}labels", job.target.hash, job.split.hash)]
    pretrained_on = (source.provenance if source else {}).get("source_dataset_hash")
    if pretrained_on:
        seen.append(LearnedFrom(f"{CHECKPOINT}pretraining data", str(pretrained_on)))
    return seen


def load_arm_model(result: ArmResult, job: Job) -> torch.nn.Module:
    """Rebuild a trained arm's model from its stored weights (no unpickling), in eval mode."""
    model = models.get_backbone(
        job.params.backbone,
        in_channels=job.target.channels,
        num_classes=job.target.num_classes,
        image_size=tuple(job.target.size),
    )
    model.load_state_dict(load_weights(result.weights_uri))
    return model.eval()


def labels_used(job: Job, seeds: list[int]) -> dict[str, int]:
    """Labelled target images behind the verdict: per model (its k-shot draw + validation) and
    distinct over every seed's draw (what the whole procedure consumed). A source model already
    fine-tuned on this target's split (``job.source_labels``, its own k-shot draw) adds its
    labels to both: the transfer arm had them, scratch did not."""
    ds, splits = load_target(job)
    val = capped_val(splits, ds.labels, job.params.val_per_class)
    draws = [seed_train(splits, ds.labels, s) for s in seeds] or [splits.train]
    train, source = len(draws[0]), int(job.source_labels)
    return {
        "k_shot": int(job.split.k_shot),
        "classes": int(job.target.num_classes),
        "train": train,
        "val": len(val),
        "source": source,
        "per_model": train + len(val) + source,
        "distinct": len(np.union1d(np.concatenate(draws), val)) + source,
    }
