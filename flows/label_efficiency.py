"""The label-efficiency flow: the transfer pipeline's arms at every k (labelled images per class),
with scratch and the controls at every k. It only composes tasks; pretraining is keyed on the
source (and the k-independent target pool), so it runs once per strategy for the whole sweep."""

from __future__ import annotations

from dataclasses import replace

from prefect import flow

from warmstart.contracts import RunPlan
from warmstart.flows.common import plan_of, prepare, sources_by_label, submit_sources, train_all
from warmstart.flows.hooks import FLOW_OPTIONS
from warmstart.params import SweepParams
from warmstart.sweep import preset
from warmstart.tasks import pipeline as t
from warmstart.tasks import sweep as s


@flow(name="label-efficiency", **FLOW_OPTIONS)
def label_efficiency(
    params: SweepParams = SweepParams(),  # noqa: B008
    plan: RunPlan | None = None,
) -> dict:
    """Accuracy vs k for every strategy × transfer mode, scratch and the controls (mean ± 95% CI)."""
    plan = plan_of(params, plan)  # validated whole: every k fits before any work starts
    job, datasets = prepare(plan, "label_efficiency")
    sources = submit_sources(job, datasets)
    per_k, results = [], []
    for k in plan.k_values:
        job_k = replace(job, split=t.make_splits(job.target, plan, k, cleaned=job.split))
        done = train_all(sources, job_k)
        results += done
        per_k.append(s.evaluate_k(k, done, job_k))
    source_models = sources_by_label(sources)
    dataset = datasets[0]
    title = f"label efficiency: {dataset.name if dataset else job.source.spec} → {job.target.name}"
    return s.report(
        per_k, results, list(source_models.values()), job.run, title, target=job.target.name
    )


def run_preset(name: str, **overrides: object) -> dict:
    """The flow on a named scenario (``warmstart.sweep.PRESETS``, e.g. "shapes-hard-32"), with
    ``overrides`` of its parameters (a smaller target, fewer seeds...)."""
    return label_efficiency(preset(name, **overrides))


if __name__ == "__main__":
    label_efficiency()
