"""Prefect tasks of the label-efficiency sweep: per-k evaluation and the report. Training and
data tasks are the transfer pipeline's own (``warmstart.tasks.pipeline``), so their S3 cache is
shared."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from warmstart import stages, tracking
from warmstart.contracts import ArmResult, Job, RunContext, SourceModel
from warmstart.reports import sweep
from warmstart.tasks.flow_artifacts import artifact_key, publish_report
from warmstart.tasks.pipeline import IO_RETRIES
from warmstart.tasks.promote import log_arm_runs


@task(name="evaluate-k", task_run_name="evaluate[k={k}]", cache_policy=NO_CACHE, **IO_RETRIES)
def evaluate_k(k: int, results: list[ArmResult], job: Job) -> list[dict]:
    """Test accuracy of every arm at this k (the test split is the same for every k); each arm's
    run gets ``test_accuracy`` and ``val_accuracy``, the names the pipeline's arm runs carry."""
    evaluation = stages.evaluate(results, job)
    log_arm_runs(evaluation, results)
    rows = sweep.curve_rows(k, evaluation, results)
    for row in rows:
        key = row["arm"].replace("/", ".")
        tracking.log_metrics(job.run.run_id, {f"test_acc.{key}": row["test_acc"]}, step=k)
    return rows


@task(name="report-label-efficiency", cache_policy=NO_CACHE, **IO_RETRIES)
def report(
    per_k: list[list[dict]],
    results: list[ArmResult],
    sources: list[SourceModel],
    run: RunContext,
    title: str,
    target: str | None = None,
) -> dict:
    """The sweep's table and plot on the parent run and, first on the flow run, in Prefect.
    ``target`` (the target dataset's name) keys the artifacts; without it, the title's end."""
    target = target or title.rsplit("→", 1)[-1].strip()
    rows = sweep.with_compute([r for rows in per_k for r in rows], sources)
    md = sweep.markdown(rows)
    tracking.log_text(run.run_id, "label_efficiency.md", sweep.page_markdown(title, md))
    tracking.log_text(run.run_id, "label_efficiency.json", sweep.dumps(rows))
    tracking.log_bytes(run.run_id, "label_efficiency.png", sweep.figure_png(rows, title))
    publish_report(
        sweep.page_markdown(title, md, caption=True),
        artifact_key("label-efficiency", target),
        sweep.table_artifact_rows(rows),
        artifact_key("label-efficiency-table", target),
        title,
    )
    stages_run = [r.stage for r in results] + [s.stage for s in sources if s.stage]
    trained = sum(not st.reused for st in stages_run)
    tracking.log_metrics(
        run.run_id, {"stages_trained": trained, "stages_reused": len(stages_run) - trained}
    )
    tracking.end_run(run.run_id)
    get_run_logger().info("label efficiency:\n%s", md)
    return {
        "rows": rows,
        "markdown": md,
        "trained": trained,
        "reused": len(stages_run) - trained,
        "pretrain_seconds": {s.label: s.seconds for s in sources},
        "pretrain_compute": {s.label: sweep.pretrain_compute(s) for s in sources},
    }
