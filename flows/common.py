"""What both flows share: the preamble (validate, ingest, track, split), the training fan-out,
and gathering results so that the first real error — not an arm that never started — is raised.
Flows only compose tasks: no tensors, no loops over batches."""

from __future__ import annotations

from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run

from warmstart import stages
from warmstart.contracts import (
    TARGET_POOL_CONTROL,
    ArmResult,
    ArmSpec,
    DatasetRef,
    Job,
    RunPlan,
    SourceModel,
)
from warmstart.errors import WarmstartError
from warmstart.params import PipelineParams
from warmstart.tasks import pipeline as t
from warmstart.tasks.leakage import check_leakage
from warmstart.tasks.stage_runs import StageStopped

Datasets = tuple[DatasetRef | None, ...]  # per planned source: its ingested dataset, if any


def plan_of(params: PipelineParams, plan: RunPlan | None) -> RunPlan:
    """The plan the CLI made and submitted, or (a deployment, the UI) one made here: the one
    validation of the run, whose pinned sources every stage reads."""
    return plan if plan is not None else t.validate_params(params)


def prepare(plan: RunPlan, kind: str) -> tuple[Job, Datasets]:
    """Ingest the target (and each source whose provider pretrains on a dataset), open the
    MLflow parent run, make the split at the plan's first k and log the inputs."""
    target = t.ingest(plan.target, "target")
    datasets = tuple(
        t.ingest(s.spec, "source", like=target) if s.needs_dataset else None for s in plan.sources
    )
    k = plan.k_values[0]
    run = t.open_tracking(plan.at(k), target, str(flow_run.get_id() or "local"), kind)
    job = Job(plan=plan, target=target, split=t.make_splits(target, plan, k), run=run)
    t.log_inputs(job, next((d for d in datasets if d is not None), None))
    # before any training: refuse (or mark) a leaky run, every source checked
    job = check_leakage(job, datasets)
    return job, datasets


def submit_sources(job: Job, datasets: Datasets) -> dict[str, PrefectFuture]:
    """One source model per label of the run (one pretraining per strategy of each dataset
    source), keyed by the run's label (``RunPlan.labels``)."""
    return {
        label: t.pretrain_source.submit(label, datasets[i], job)
        for label, (i, _) in job.plan.labels.items()
    }


def submit_arms(sources: dict[str, PrefectFuture], job: Job) -> list[PrefectFuture]:
    """Every arm at one k: source × mode × seed, scratch and the control per seed."""
    return [
        t.arm_task(spec).submit(spec, sources.get(spec.strategy), job)
        for spec in stages.arm_specs(job.params, list(sources))
    ]


def gather(futures: list[PrefectFuture]) -> list:
    """Results in submission order. On failure, raise the root cause: the first failed task whose
    error is ours (storage, tracking, data, config…), never an arm that could not start because
    its upstream failed."""
    first: BaseException | None = None
    for future in as_completed(futures):
        if future.state.is_completed():
            continue
        try:
            future.result()
        except StageStopped as exc:  # a consequence of the flow run ending, never the cause
            first = first or exc
        except WarmstartError:
            raise
        except BaseException as exc:  # noqa: BLE001 - keep looking for the root cause
            first = first or exc
    if first is not None:
        raise first
    return [f.result() for f in futures]


def sources_by_label(futures: dict[str, PrefectFuture]) -> dict[str, SourceModel]:
    return dict(zip(futures, gather(list(futures.values())), strict=True))


def train_all(sources: dict[str, PrefectFuture], job: Job) -> list[ArmResult]:
    """Submit every arm and gather them together with their sources (root cause first)."""
    arms = submit_arms(sources, job)
    return gather([*sources.values(), *arms])[len(sources) :]


def train_confirmation(
    specs: list[ArmSpec],
    sources: dict[str, PrefectFuture],
    datasets: Datasets,
    job: Job,
) -> list[ArmResult]:
    """The chosen arm and scratch on the confirmation seeds; the target-pool-only control arms
    get their own pretraining (the same strategy on the target pool alone)."""
    labels = {s.strategy for s in specs if s.arm.startswith(TARGET_POOL_CONTROL) and s.strategy}
    pool = {
        label: t.pretrain_pool_only.submit(label, datasets[job.plan.labels[label][0]], job)
        for label in sorted(labels)
    }
    arms = [
        t.arm_task(spec).submit(
            spec,
            (pool if spec.arm.startswith(TARGET_POOL_CONTROL) else sources).get(spec.strategy),
            job,
        )
        for spec in specs
    ]
    return gather([*pool.values(), *arms])[len(pool) :]
