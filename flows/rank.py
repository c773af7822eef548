"""The ``rank-sources`` flow: which source? It only composes tasks.

plan-candidates (or the CLI's plans) → ingest the target → open-tracking → per candidate
source: make-splits, ingest[source] (a dataset), check-leakage, pretrain-source per label (the
cached stage: paid once) → score-candidate per label (frozen features of the k-shot train and
validation images, never test) → publish-ranking (table, plot, ``chosen: …, by <score>, on
validation``)."""

from __future__ import annotations

from prefect import flow
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from warmstart.contracts import DatasetRef, Job, RunContext, RunPlan
from warmstart.flows.common import gather
from warmstart.flows.hooks import FLOW_OPTIONS
from warmstart.params import RankParams
from warmstart.ranking.candidates import Candidate, score_name
from warmstart.tasks import pipeline as t
from warmstart.tasks import rank as r
from warmstart.tasks.leakage import check_leakage


def rank_run_name() -> str:
    """``rank · <target> · k=<k> · <n> sources``."""
    raw = flow_run.parameters.get("params") or {}
    params = raw if isinstance(raw, RankParams) else RankParams(**raw)
    target = params.target.split("?")[0].split(":")[-1].rstrip("/").rsplit("/", 1)[-1]
    return f"rank · {target} · k={params.k_shot} · {len(params.sources)} sources"


def candidate_job(
    plan: RunPlan, targets: dict[str, DatasetRef], run: RunContext
) -> tuple[Job, DatasetRef | None]:
    """One candidate source's job: the target as its plan ingests it, the split, the source
    dataset (when it pretrains on one) and the leakage guard, before any pretraining."""
    if plan.target not in targets:
        targets[plan.target] = t.ingest(plan.target, "target")
    target = targets[plan.target]
    k = plan.k_values[0]
    job = Job(plan=plan, target=target, split=t.make_splits(target, plan, k), run=run)
    source = (
        t.ingest(plan.source.spec, "source", like=target) if plan.source.needs_dataset else None
    )
    return check_leakage(job, (source,)), source


def submit_scores(candidates: list[Candidate], run: RunContext, targets: dict) -> list:
    """Pretrain (or load) and score every candidate; the futures, in the candidates' order."""
    futures: list[PrefectFuture] = []
    jobs: dict[str, tuple[Job, DatasetRef | None]] = {}
    for c in candidates:
        if c.spec not in jobs:
            jobs[c.spec] = candidate_job(c.plan, targets, run)
        job, dataset = jobs[c.spec]
        source = t.pretrain_source.submit(c.label, dataset, job)
        futures += [source, r.score_candidate.submit(source, job, c.name)]
    return futures


@flow(name="rank-sources", **{**FLOW_OPTIONS, "flow_run_name": rank_run_name})
def rank_sources(
    params: RankParams = RankParams(),  # noqa: B008
    plans: list[RunPlan] | None = None,
) -> dict:
    """Rank candidate sources on the target's validation data from one pass of frozen features
    per candidate, and name the one to run the protocol on."""
    if plans:
        candidates = [Candidate(p, label) for p in plans for label in p.source.labels]
    else:
        candidates = r.plan_candidates(params)
    first = candidates[0].plan
    target = t.ingest(first.target, "target")
    flow_id = str(flow_run.get_id() or "local")
    run = t.open_tracking(params, target, flow_id, "rank")
    rows = gather(submit_scores(candidates, run, {first.target: target}))[1::2]
    return r.publish_ranking(rows, score_name(params), run, target.name, first.k_values[0])


if __name__ == "__main__":
    rank_sources()
