"""The transfer pipeline flow: it only composes tasks (no tensors, no loops over batches).

ingest → make_splits → pretrain_source (per strategy) → finetune_target (strategy × mode × seed)
→ train_scratch_baseline (per seed) + controls → evaluate → register_and_promote.
Training tasks carry the tag ``gpu``; the ``gpu`` concurrency limit decides how many run at once.
"""

from __future__ import annotations

import time

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from warmstart.tasks import pipeline as t

from warmstart.params import PipelineParams


def _run_name() -> str:
    params = flow_run.parameters.get("params") or {}
    if isinstance(params, PipelineParams):
        params = params.model_dump()
    target = str(params.get("target", "builtin:uci-digits")).split("?")[0].split(":")[-1]
    return f"{target.rsplit('/', 1)[-1]}-k{params.get('k_shot', 10)}"


def submit_arms(pretrain: dict, target, split, params: PipelineParams, tracking) -> list:
    """Submit every arm at one k: strategy × mode × seed, scratch and the control per seed."""
    seeds = range(params.seeds)
    futures = [
        t.finetune_target.submit(pretrain[s], s, mode, seed, target, split, params, tracking)
        for s in params.strategies
        for mode in params.transfer_modes
        for seed in seeds
    ]
    futures += [
        t.train_scratch_baseline.submit(seed, target, split, params, tracking) for seed in seeds
    ]
    futures += [t.train_control.submit(seed, target, split, params, tracking) for seed in seeds]
    return futures


@flow(
    name="transfer-pipeline",
    flow_run_name=_run_name,
    # Three threads: one training task holds the `gpu` slot while at most two wait for it, so few
    # tasks poll the server for the slot (each poll is server CPU taken from training on 2 cores).
    # For several GPUs raise this with `transfer_pipeline.with_options(task_runner=...)` or Dask.
    task_runner=ThreadPoolTaskRunner(max_workers=3),
    log_prints=True,
    validate_parameters=True,
)
def transfer_pipeline(params: PipelineParams = PipelineParams()) -> dict:  # noqa: B008
    """Pretrain on the source with each strategy, transfer to the target, compare with scratch on
    the same data and budget, and promote a model in MLflow only if it really beats scratch."""
    started = time.time()
    t.validate_params(params)
    target = t.ingest(params.target, "target")
    source = t.ingest(params.source, "source", like=target)
    tracking = t.open_tracking(params, target["name"], str(flow_run.get_id() or "local"))
    split = t.make_splits(target, params)
    t.log_inputs(tracking, source, target, split)

    pretrain = {
        s: t.pretrain_source.submit(s, source, target, split, params, tracking)
        for s in params.strategies
    }
    training = submit_arms(pretrain, target, split, params, tracking)
    results = [f.result() for f in training]
    pretrains = {s: f.result() for s, f in pretrain.items()}
    evaluation = t.evaluate(results, pretrains, target, split, params, tracking)
    return t.register_and_promote(
        evaluation, results, pretrains, source, target, split, params, tracking, started
    )


if __name__ == "__main__":
    transfer_pipeline()
