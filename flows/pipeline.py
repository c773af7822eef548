"""The transfer pipeline flow: it only composes tasks (no tensors, no loops over batches).

plan (the CLI's, or validate-params) → ingest → make_splits → check-leakage → pretrain-source
(per source model) → train_arm as finetune-target (source × mode × selection seed),
train-scratch-baseline (scratch's search grid × seed) and train-control → choose on
validation → confirmation: the chosen arm and scratch again on fresh seeds (and, for a GAN or
autoencoder that also saw the target pool, a target-pool-only control) → evaluate →
register_and_promote, deciding on the confirmation seeds only.
Training tasks carry the tag ``gpu``; the ``gpu`` concurrency limit decides how many run at once.
"""

from __future__ import annotations

import time

from prefect import flow

from warmstart.contracts import RunPlan
from warmstart.flows.common import (
    plan_of,
    prepare,
    sources_by_label,
    submit_sources,
    train_all,
    train_confirmation,
)
from warmstart.flows.hooks import FLOW_OPTIONS
from warmstart.params import PipelineParams
from warmstart.tasks import confirm as c
from warmstart.tasks import promote as p


@flow(name="transfer-pipeline", **FLOW_OPTIONS)
def transfer_pipeline(
    params: PipelineParams = PipelineParams(),  # noqa: B008
    plan: RunPlan | None = None,
) -> dict:
    """Pretrain on the source with each strategy, transfer to the target, compare with scratch on
    the same data and an equal search, choose on validation, confirm on fresh seeds, and promote a
    model in MLflow only if it really beats scratch there."""
    started = time.time()
    job, datasets = prepare(plan_of(params, plan), "pipeline")
    sources = submit_sources(job, datasets)
    results = train_all(sources, job)
    choice, specs = c.choose(results, job)  # the gate's protocol: chosen on validation
    confirmed = train_confirmation(specs, sources, datasets, job)
    source_models = sources_by_label(sources)
    evaluation, rows = p.evaluate(results, source_models, job)
    gate, confirm_rows, record = c.evaluate_confirmation(
        choice, confirmed, source_models, job, evaluation
    )
    if gate is None:  # confirm_seeds=0: the selection's numbers, which cannot promote
        gate = c.with_protocol(evaluation, choice, record)
    scored = (gate, rows + confirm_rows)
    summary = p.register_and_promote(scored, results + confirmed, source_models, job, started)
    return {**summary, "protocol": record}


if __name__ == "__main__":
    transfer_pipeline()
