"""The ranking's Prefect tasks: thin wrappers over ``warmstart.ranking``. ``plan-candidates``
(every candidate planned by ``stages.make_plan``, before anything is ingested),
``score-candidate[<candidate>]`` (frozen features of the k-shot train and validation images,
every score; tag ``gpu``) and ``publish-ranking`` (the table, plot and JSON on the MLflow run,
the Markdown report and table on the flow run, the run ended)."""

from __future__ import annotations

import json

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from warmstart import tracking
from warmstart.contracts import Job, RunContext, SourceModel
from warmstart.params import RankParams
from warmstart.ranking import candidates, features, order
from warmstart.reports import ranking as report
from warmstart.reports.plots import figure_png
from warmstart.tasks.flow_artifacts import artifact_key, publish_report
from warmstart.tasks.pipeline import IO_RETRIES, TRAIN_OPTS


@task(name="plan-candidates", cache_policy=NO_CACHE)
def plan_candidates(params: RankParams) -> list[candidates.Candidate]:
    """Every candidate planned (resolved, checked, pinned) before anything is ingested."""
    return candidates.plan_candidates(params)


@task(name="score-candidate", task_run_name="score-candidate[{name}]", **TRAIN_OPTS)
def score_candidate(source: SourceModel, job: Job, name: str) -> features.CandidateScore:
    scored = features.score_candidate(source, job, name)
    shown = ", ".join(f"{k} {order.fmt(v)}" for k, v in scored.scores.items())
    get_run_logger().info("%s: %s (features %.2f s)", name, shown, scored.extract_seconds)
    return scored


@task(name="publish-ranking", cache_policy=NO_CACHE, **IO_RETRIES)
def publish_ranking(
    rows: list[features.CandidateScore], score: str, run: RunContext, target: str, k: int
) -> dict:
    """Rank, then show it everywhere a user looks; the MLflow run ends here."""
    ranking = order.rank(rows, score)
    run_id = run.run_id
    md = report.markdown(ranking, target, k)
    tracking.log_text(run_id, "ranking.md", md)
    tracking.log_text(run_id, "ranking.json", json.dumps(ranking.to_dict(), indent=1))
    try:
        tracking.log_bytes(run_id, "ranking.png", figure_png(report.ranking_figure(ranking)))
    except Exception as exc:  # noqa: BLE001 - a plot must never fail the ranking
        get_run_logger().warning("ranking plot not drawn: %s", exc)
    seconds = sum(r.extract_seconds for r in rows)
    tracking.log_metrics(run_id, {"rank.extract_seconds": seconds, "rank.candidates": len(rows)})
    tracking.set_tags(run_id, {"rank.score": score, "rank.chosen": ranking.chosen.name})
    publish_report(
        md,
        artifact_key("source-ranking", target),
        report.table_rows(ranking),
        artifact_key("ranking-table", target),
        order.chosen_line(ranking),
    )
    tracking.end_run(run_id)
    get_run_logger().info(order.chosen_line(ranking))
    return {
        **ranking.to_dict(),
        "target": target,
        "k_shot": k,
        "flow_run_id": run.flow_run_id,
        "mlflow_run_id": run_id,
        "table": report.table_rows(ranking),
    }
