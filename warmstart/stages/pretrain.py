"""The ``pretrain`` source provider: pretrain a backbone on a source dataset with a strategy.

Supervised strategies train on the labelled source; label-free ones (gan, autoencoder) on the
source, the target's unlabelled pool, or both (``unsupervised_data``). Cached in S3 by the hashes
of everything it is computed from, and resumed from its last epoch checkpoint when interrupted.
A supervised strategy's classifier over the source's classes is stored beside the trunk
(``head.safetensors``, ``SourceModel.head_uri``) for the ranking's LEEP and NCE.
"""

from __future__ import annotations

import numpy as np

from warmstart import models, timing
from warmstart.contracts import DatasetRef, Job, SourceModel
from warmstart.data import open_dataset
from warmstart.data.streamed import StreamedBatches
from warmstart.models.registry import strategy_class
from warmstart.params import PipelineParams
from warmstart.runstore import RunStore, run_key
from warmstart.stages.config import config_dict, data_needs, device, threads
from warmstart.stages.data import index_hash, unlabelled_pool
from warmstart.stages.sources import (
    CHECKPOINT,
    DEFAULT_PROVIDER,
    LearnedFrom,
    SourceProvider,
    register_source_provider,
    write_learned,
)
from warmstart.stages.weights import (
    Report,
    epoch_uploads,
    mark_reused,
    no_report,
    save_png,
    save_state,
    stage_record,
)

WEIGHTS = "backbone.safetensors"
HEAD = "head.safetensors"  # the supervised strategy's classifier over the source's classes


def pretrain_config(params: PipelineParams, strategy: str) -> models.PretrainConfig:
    return models.PretrainConfig(
        epochs=params.pretrain_epochs, seed=0, device=device(params), num_threads=threads(params)
    )


@register_source_provider(DEFAULT_PROVIDER)
class PretrainProvider(SourceProvider):
    """Dataset specs (``builtin:``, ``cifar10:``, ``imagefolder:``): one source per strategy."""

    needs_dataset = True

    def labels(self, params: PipelineParams) -> list[str]:
        return list(params.strategies)

    def resolve(
        self, label: str, dataset: DatasetRef | None, job: Job, report: Report = no_report
    ) -> SourceModel:
        assert dataset is not None, "the pretrain provider needs the ingested source dataset"
        params, target = job.params, job.target
        cfg = pretrain_config(params, label)
        uses_source, uses_target = data_needs(label, params)
        pool = unlabelled_pool(job.split) if uses_target else None
        provenance = {
            "strategy": label,
            "backbone": params.backbone,
            "geometry": [target.channels, *target.size],
            "source": dataset.hash if uses_source else None,
            "target_pool": index_hash(pool) if pool is not None else None,
            "config": config_dict(cfg),
        }
        store = RunStore(run_key(f"pretrain-{label}", provenance))
        with timing.span("load"):
            done = store.finished()
            if done is not None:
                return mark_reused(SourceModel.from_dict(done))
            images, labels = _source_data(label, dataset, job, pool, uses_source)
            stage_dir = store.pull()
        with timing.span("train"):
            result = self._train(label, dataset, job, cfg, images, labels, store, stage_dir, report)
        with timing.span("upload"):
            used = dataset if uses_source else None
            return self._store(label, dataset, used, job, pool, images, provenance, result, store)

    def _train(self, label, dataset, job, cfg, images, labels, store, stage_dir, report):
        params, target = job.params, job.target
        with epoch_uploads(store, stage_dir / "ckpt", report) as on_epoch_end:
            return models.pretrain(
                label,
                backbone=params.backbone,
                in_channels=target.channels,
                image_size=tuple(target.size),
                images=images,
                labels=labels,
                num_classes=dataset.num_classes if labels is not None else None,
                config=cfg,
                checkpoint_dir=stage_dir / "ckpt",
                on_epoch_end=on_epoch_end,
            )

    def _store(self, label, dataset, used, job, pool, images, provenance, result, store):
        """The trained backbone, its images and ``learned.json``, then (last) ``result.json``."""
        params, target, stage_dir = job.params, job.target, store.local
        cfg = pretrain_config(params, label)
        save_state(stage_dir / WEIGHTS, result.backbone_state)
        store.push(write_learned(stage_dir, learned(used, pool, job)))
        head_uri = ""
        if result.head_state:
            save_state(stage_dir / HEAD, result.head_state)
            head_uri = store.push(stage_dir / HEAD)
        artifacts = {}
        for name, image in (result.artifacts or {}).items():
            save_png(stage_dir / f"{name}.png", image)
            artifacts[name] = store.push(stage_dir / f"{name}.png")
        source = SourceModel(
            label=label,
            provider=self.name,
            backbone=params.backbone,
            weights_uri=store.push(stage_dir / WEIGHTS),
            channels=target.channels,
            image_size=tuple(target.size),
            provenance={**provenance, "source_dataset_hash": dataset.hash},
            artifacts=artifacts,
            images=int(images.num_examples if streamed(images) else len(images)),
            stage=stage_record(store, result, config_dict(cfg)),
            head_uri=head_uri,
        )
        store.finish(source.to_dict())
        return source


def learned(dataset: DatasetRef | None, pool: np.ndarray | None, job: Job) -> list[LearnedFrom]:
    """What a pretraining stage's weights learned from: the source dataset, the target's pool
    (recorded as the run's target and split: everything outside the split's test set)."""
    seen = [LearnedFrom(f"{CHECKPOINT}pretraining data", dataset.hash)] if dataset else []
    if pool is not None:
        seen.append(LearnedFrom(f"{CHECKPOINT}target pool", job.target.hash, job.split.hash))
    return seen


def streamed(images: np.ndarray | StreamedBatches) -> bool:
    return isinstance(images, StreamedBatches)


def _source_data(
    strategy: str, dataset: DatasetRef, job: Job, pool: np.ndarray | None, uses_source: bool
) -> tuple[np.ndarray | StreamedBatches, np.ndarray | None]:
    """The pretraining images (source and/or target pool) and the labels if the strategy uses
    them. A source above the in-memory limit (``open_dataset``) is streamed shard by shard, the
    pool (if used) mixed into it; smaller ones are arrays, exactly as before."""
    parts, labels = [], None
    labelled = strategy_class(strategy).needs_labels
    pool_images = open_dataset(job.target.hash).images[pool] if pool is not None else None
    if uses_source:
        src = open_dataset(dataset.hash)
        if not src.in_memory:
            extra_id = index_hash(pool) if pool is not None else ""
            return StreamedBatches(
                src, labelled=labelled, extra=pool_images, extra_id=extra_id
            ), None
        parts.append(src.images)
        labels = src.labels if labelled else None
    if pool_images is not None:
        parts.append(pool_images)
    return (np.concatenate(parts) if len(parts) > 1 else parts[0]), labels
