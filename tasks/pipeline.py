"""Prefect tasks of the transfer pipeline: thin wrappers over ``warmstart.stages`` that add
tracking (MLflow nested runs, Prefect artifacts), retries on I/O only, and the ``gpu`` tag.

Caching is ours, not Prefect's: every training stage is keyed on content hashes of its inputs and
stored in S3 (``warmstart.runstore``), so Prefect's input-pickling cache is off (``NO_CACHE``).
Storage and tracking clients already ride out a service restart (about a minute of jittered
retries); the task-level retry is the second line, for an outage longer than that.
"""

from __future__ import annotations

from dataclasses import replace

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from warmstart import outage, stages, storage, timing
from warmstart.contracts import (
    ArmResult,
    ArmSpec,
    DatasetRef,
    Job,
    RunContext,
    RunPlan,
    SourceModel,
    SplitRef,
)
from warmstart.errors import StorageError, TrackingError
from warmstart.params import PipelineParams
from warmstart.stages.leakage import same_removal
from warmstart.tasks import stage_runs
from warmstart.tasks.stage_runs import log_stage, stage_run


def _io_only(task, task_run, state) -> bool:
    """Retry only when storage or tracking failed, never on bad input or compute errors, and
    not once an outage has used up its whole retry budget (``warmstart.outage``)."""
    try:
        state.result()
    except (StorageError, TrackingError, ConnectionError, TimeoutError):
        return not outage.spent(storage.retry_window())
    except Exception:  # noqa: BLE001
        return False
    return False


# One task-level retry after 10 s (jittered), for an outage shorter than the retry budget that
# still failed a call; none once the outage has used the whole budget (the clients count it).
IO_RETRIES = dict(
    retries=1, retry_delay_seconds=10, retry_jitter_factor=0.5, retry_condition_fn=_io_only
)
TRAIN_OPTS = dict(tags=["gpu"], cache_policy=NO_CACHE, **IO_RETRIES)


@task(name="validate-params", cache_policy=NO_CACHE)
def validate_params(params: PipelineParams) -> RunPlan:
    """The checks before anything is ingested; the run's plan (the source pinned)."""
    return stages.make_plan(params)


@task(name="open-tracking", cache_policy=NO_CACHE, **IO_RETRIES)
def open_tracking(
    params: PipelineParams, target: DatasetRef, flow_run_id: str, kind: str
) -> RunContext:
    return stage_runs.open_pipeline_run(params, target.name, flow_run_id, kind)


@task(name="ingest", task_run_name="ingest[{role}]", cache_policy=NO_CACHE, **IO_RETRIES)
def ingest(spec: str, role: str, like: DatasetRef | None = None) -> DatasetRef:
    ref = stages.ingest(spec, like=like)
    get_run_logger().info(
        "%s %s: %d images %dx%dx%d, %d classes, sha256 %s (%s)",
        role,
        ref.spec,
        ref.count,
        ref.channels,
        *ref.size,
        ref.num_classes,
        ref.hash[:12],
        "uploaded" if ref.uploaded else "already stored, nothing uploaded",
    )
    return ref


@task(name="make-splits", cache_policy=NO_CACHE, **IO_RETRIES)
def make_splits(
    target: DatasetRef, plan: RunPlan, k_shot: int, cleaned: SplitRef | None = None
) -> SplitRef:
    """The target's split at ``k_shot``; with ``cleaned`` (a split the leakage guard removed
    images from, e.g. at another k), less the same validation and test images."""
    split = stages.make_target_splits(target, plan.split, k_shot)
    if cleaned is not None:
        split = same_removal(cleaned, split)
    get_run_logger().info(
        "splits %s: train %d (k=%d per class), val %d, test %d, unlabelled pool %d",
        split.hash[:12],
        split.train,
        split.k_shot,
        split.val,
        split.test,
        split.unlabelled,
    )
    return split


@task(name="log-inputs", cache_policy=NO_CACHE, **IO_RETRIES)
def log_inputs(job: Job, source: DatasetRef | None) -> None:
    stage_runs.log_pipeline_inputs(job, source)


@task(name="pretrain-source", task_run_name="pretrain-source[{label}]", **TRAIN_OPTS)
def pretrain_source(label: str, dataset: DatasetRef | None, job: Job) -> SourceModel:
    """Resolve one source model through the source's provider (pretraining, for datasets);
    ``label`` is the run's (``RunPlan.labels``), ``dataset`` that source's."""
    return _pretrain(label, dataset, job, f"pretrain-source[{label}]")


@task(
    name="pretrain-target-pool-only",
    task_run_name="pretrain-target-pool-only[{label}]",
    **TRAIN_OPTS,
)
def pretrain_pool_only(label: str, dataset: DatasetRef | None, job: Job) -> SourceModel:
    """The source-vs-target-pool control: the same strategy pretrained on the target's
    unlabelled pool only, so the arm's gain can be split into the source's and the pool's."""
    pool_only = job.plan.params.model_copy(update={"unsupervised_data": "target_pool"})
    return _pretrain(
        label,
        dataset,
        replace(job, plan=replace(job.plan, params=pool_only)),
        f"pretrain-source[{label}/pool-only]",
    )


def _pretrain(run_label: str, dataset: DatasetRef | None, job: Job, name: str) -> SourceModel:
    job, label = job.of(run_label)  # that source's own plan and the provider's label
    provider = stages.provider_of(job.source)
    epochs = (
        job.params.pretrain_epochs if job.source.needs_dataset else 0
    )  # 0: loads, trains nothing
    params = {
        "strategy": label,
        "provider": provider.name,
        "backbone": job.params.backbone,
        "epochs": epochs,
        "unsupervised_data": job.params.unsupervised_data,
    }
    tags = {"warmstart.stage": "pretrain_source", "strategy": label}
    with stage_run(job.run, name, params, tags, epochs) as progress:
        source = provider.resolve(label, dataset, job, report=progress)
        with timing.span("log"):
            if source.stage is not None:
                log_stage(progress.run_id, name, source.stage, label)
            stage_runs.log_source_artifacts(progress.run_id, source)
    return stage_runs.with_run_id(source, progress.run_id)


@task(name="train-arm", task_run_name="{spec.stage}[{spec.arm}/seed={spec.seed}]", **TRAIN_OPTS)
def train_arm(spec: ArmSpec, source: SourceModel | None, job: Job) -> ArmResult:
    """Train one arm at one seed (a transfer arm, a point of scratch's grid, or a control)."""
    job, _ = job.of(spec.strategy)  # a transfer arm reads its own source's plan
    name = f"{spec.stage}[{spec.arm}/seed={spec.seed}]"
    params = {
        "arm": spec.arm,
        "strategy": spec.strategy or "none",
        "transfer_mode": spec.mode,
        "seed": spec.seed,
        "backbone": job.params.backbone,
        "epochs": job.params.finetune_epochs,
        "k_shot": job.split.k_shot,
        "phase": spec.phase,
    }
    if spec.lr is not None:  # a point of scratch's search grid
        params |= {"lr": spec.lr, "weight_decay": spec.weight_decay}
    tags = {
        "warmstart.stage": spec.stage,
        "strategy": spec.strategy or "none",
        "transfer_mode": spec.mode,
        "seed": str(spec.seed),
        "phase": spec.phase,
    }
    with stage_run(job.run, name, params, tags, job.params.finetune_epochs) as progress:
        result = stages.finetune_target(spec, source, job, report=progress)
        with timing.span("log"):
            log_stage(
                progress.run_id, name, result.stage, spec.arm, {"best_val_acc": result.val_acc}
            )
    return stage_runs.with_run_id(result, progress.run_id)


def arm_task(spec: ArmSpec):
    """The task that trains ``spec``: the one task function, named after the arm's stage
    (``finetune-target``, ``train-scratch-baseline`` or ``train-control``)."""
    return train_arm.with_options(name=spec.stage)
