"""The label-efficiency flow: the transfer pipeline's arms at every k (labelled images per class),
with scratch and the controls at every k. It only composes tasks; pretraining is keyed on the
source (and the k-independent target pool), so it runs once per strategy for the whole sweep."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from warmstart.flows.pipeline import submit_arms
from warmstart.tasks import pipeline as t
from warmstart.tasks import sweep as s

from warmstart.sweep import SweepParams


@flow(
    name="label-efficiency",
    task_runner=ThreadPoolTaskRunner(max_workers=3),
    log_prints=True,
    validate_parameters=True,
)
def label_efficiency(params: SweepParams = SweepParams()) -> dict:  # noqa: B008
    """Accuracy vs k for every strategy × transfer mode, scratch and the controls (mean ± 95% CI)."""
    first = params.at(params.k_values[0])
    t.validate_params(first)
    target = t.ingest(params.target, "target")
    source = t.ingest(params.source, "source", like=target)
    tracking = t.open_tracking(
        params, target["name"], str(flow_run.get_id() or "local"), kind="label_efficiency"
    )
    splits = {k: t.make_splits(target, params.at(k)) for k in params.k_values}
    t.log_inputs(tracking, source, target, splits[params.k_values[0]])
    pretrain = {
        st: t.pretrain_source.submit(
            st, source, target, splits[params.k_values[0]], first, tracking
        )
        for st in params.strategies
    }
    per_k, results = [], []
    for k in params.k_values:
        pk, split = params.at(k), splits[k]
        futures = submit_arms(pretrain, target, split, pk, tracking)
        done = [f.result() for f in futures]
        results += done
        per_k.append(s.evaluate_k(k, done, target, split, pk, tracking))
    pretrains = [f.result() for f in pretrain.values()]
    title = f"label efficiency: {source['name']} → {target['name']}"
    return s.report(per_k, results + pretrains, tracking, title)


if __name__ == "__main__":
    label_efficiency()
