"""Target training: transfer arms, the scratch baseline and the random-init control.

Scratch is a ``finetune`` from random init: the same backbone, epochs, steps, augmentation and
optimiser as the transfer arms. The control freezes a random-init trunk and trains the head.
"""

from __future__ import annotations

import torch

from warmstart import models
from warmstart.contracts import (
    RANDOM_INIT_CONTROL,
    SCRATCH,
    ArmResult,
    ArmSpec,
    Job,
    SourceModel,
)
from warmstart.params import PipelineParams
from warmstart.runstore import RunStore, run_key
from warmstart.stages.data import load_target
from warmstart.stages.pretrain import config_dict, device
from warmstart.stages.weights import (
    Report,
    epoch_pusher,
    load_weights,
    mark_reused,
    no_report,
    save_state,
    stage_record,
)

WEIGHTS = "model.safetensors"


def train_config(params: PipelineParams, seed: int) -> models.TrainConfig:
    return models.TrainConfig(epochs=params.finetune_epochs, seed=seed, device=device(params))


def arm_specs(params: PipelineParams, labels: list[str]) -> list[ArmSpec]:
    """Every arm at one k: source label × mode × seed, then scratch and the control per seed."""
    seeds = range(params.seeds)
    specs = [
        ArmSpec(f"{label}/{mode}", mode, seed, "finetune-target", strategy=label)
        for label in labels
        for mode in params.transfer_modes
        for seed in seeds
    ]
    specs += [ArmSpec(SCRATCH, "finetune", s, "train-scratch-baseline") for s in seeds]
    specs += [ArmSpec(RANDOM_INIT_CONTROL, "linear_probe", s, "train-control") for s in seeds]
    return specs


def finetune_target(
    spec: ArmSpec, source: SourceModel | None, job: Job, report: Report = no_report
) -> ArmResult:
    """Train one arm on the k-shot target set (cached in S3 by the hashes of its inputs)."""
    params, target = job.params, job.target
    cfg = train_config(params, spec.seed)
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
    store = RunStore(run_key("finetune", inputs))
    done = store.finished()
    if done is not None:
        return mark_reused(ArmResult.from_dict(done))
    ds, splits = load_target(job)
    stage_dir = store.pull()
    fit = models.fit_target(
        backbone=params.backbone,
        init_state=load_weights(source.weights_uri) if source else None,
        mode=spec.mode,
        in_channels=target.channels,
        image_size=tuple(target.size),
        num_classes=target.num_classes,
        train=(ds.images[splits.train], ds.labels[splits.train]),
        val=(ds.images[splits.val], ds.labels[splits.val]),
        config=cfg,
        checkpoint_dir=stage_dir / "ckpt",
        on_epoch_end=epoch_pusher(store, stage_dir / "ckpt", report),
    )
    save_state(stage_dir / WEIGHTS, fit.model.state_dict())
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
