"""Prefect tasks of the label-efficiency sweep: per-k evaluation and the report. Training and
data tasks are the transfer pipeline's own (tasks/pipeline.py), so their S3 cache is shared."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from warmstart.tasks.pipeline import IO_RETRIES

from warmstart import mlruns, sweep
from warmstart import pipeline as core
from warmstart.params import PipelineParams


@task(name="evaluate-k", task_run_name="evaluate[k={k}]", cache_policy=NO_CACHE, **IO_RETRIES)
def evaluate_k(
    k: int, results: list[dict], target: dict, split: dict, params: PipelineParams, tracking: dict
) -> list[dict]:
    """Test accuracy of every arm at this k (the test split is the same for every k)."""
    rows = sweep.curve_rows(k, core.evaluate(results, target, split, params), results)
    for row in rows:
        key = row["arm"].replace("/", ".")
        mlruns.log_metrics(tracking["run_id"], {f"test_acc.{key}": row["test_acc"]}, step=k)
    return rows


@task(name="report-label-efficiency", cache_policy=NO_CACHE, **IO_RETRIES)
def report(per_k: list[list[dict]], results: list[dict], tracking: dict, title: str) -> dict:
    rows = [r for rows in per_k for r in rows]
    md = sweep.markdown(rows)
    run_id = tracking["run_id"]
    mlruns.log_text(run_id, "label_efficiency.md", f"# {title}\n\n{md}")
    mlruns.log_text(run_id, "label_efficiency.json", sweep.dumps(rows))
    mlruns.log_bytes(run_id, "label_efficiency.png", sweep.figure_png(rows, title))
    create_markdown_artifact(
        markdown=f"# {title}\n\nTest accuracy %, mean [95% CI] over seeds.\n\n{md}",
        key="label-efficiency",
        description=title,
    )
    create_table_artifact(
        table=[
            {
                k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in r.items()
                if k != "histories"
            }
            for r in rows
        ],
        key="label-efficiency-table",
        description=title,
    )
    trained = sum(not r["reused"] for r in results)
    mlruns.log_metrics(run_id, {"stages_trained": trained, "stages_reused": len(results) - trained})
    mlruns.end_run(run_id)
    get_run_logger().info("label efficiency:\n%s", md)
    pretrain = {r["strategy"]: r["seconds"] for r in results if r.get("kind") == "pretrain"}
    return {
        "rows": rows,
        "markdown": md,
        "trained": trained,
        "reused": len(results) - trained,
        "pretrain_seconds": pretrain,
    }
