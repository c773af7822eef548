"""The transfer pipeline flow: it only composes tasks (no tensors, no loops over batches).

ingest → make_splits → pretrain_source (per source model) → finetune_target (source × mode ×
seed) → train_scratch_baseline (per seed) + controls → evaluate → register_and_promote.
Training tasks carry the tag ``gpu``; the ``gpu`` concurrency limit decides how many run at once.
"""

from __future__ import annotations

import time

from prefect import flow

from warmstart.flows.common import prepare, sources_by_label, submit_sources, train_all
from warmstart.flows.hooks import FLOW_OPTIONS
from warmstart.params import PipelineParams
from warmstart.tasks import promote as p


@flow(name="transfer-pipeline", **FLOW_OPTIONS)
def transfer_pipeline(params: PipelineParams = PipelineParams()) -> dict:  # noqa: B008
    """Pretrain on the source with each strategy, transfer to the target, compare with scratch on
    the same data and budget, and promote a model in MLflow only if it really beats scratch."""
    started = time.time()
    job, dataset = prepare(params, "pipeline")
    sources = submit_sources(job, dataset)
    results = train_all(sources, job)
    source_models = sources_by_label(sources)
    scored = p.evaluate(results, source_models, job)
    return p.register_and_promote(scored, results, source_models, job, started)


if __name__ == "__main__":
    transfer_pipeline()
