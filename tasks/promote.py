"""Prefect tasks at the end of the pipeline: evaluate every arm on the test split, then gate,
register and promote. Thin wrappers over ``warmstart.stages`` and ``warmstart.promotion``; they
add the MLflow artifacts and the Prefect verdict and table."""

from __future__ import annotations

import time

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from warmstart import promotion, stages, tracking
from warmstart.contracts import ArmResult, Evaluation, Job, SourceModel, StageRecord, TableRow
from warmstart.promotion import recompute
from warmstart.promotion.classes import gate_class_drops
from warmstart.promotion.metric import gate_weights
from warmstart.reports import model_card, plots
from warmstart.reports.gate import gate_report
from warmstart.reports.table import removed_note, summarize, table_cells, table_markdown
from warmstart.tasks.events import emit_verdict
from warmstart.tasks.flow_artifacts import artifact_key, publish_report
from warmstart.tasks.model_card import publish_card
from warmstart.tasks.pipeline import IO_RETRIES


def predictions_parquet(evaluation: Evaluation) -> bytes:
    """Per-example predictions of every arm and seed of the selection, for paired statistics
    later; the pipeline replaces it with selection + confirmation (``tasks.confirm``)."""
    return recompute.to_parquet(recompute.predictions_frame(evaluation, "selection"))


@task(name="evaluate", cache_policy=NO_CACHE, **IO_RETRIES)
def evaluate(
    results: list[ArmResult], sources: dict[str, SourceModel], job: Job
) -> tuple[Evaluation, list[TableRow]]:
    """Every arm on the test split (read only here) and the results table."""
    evaluation = stages.evaluate(results, job)
    rows = summarize(evaluation, sources)
    run_id = job.run.run_id
    # the parent keeps one mean test accuracy per arm (the label-efficiency plot and the browser
    # test read them); the comparable per-seed numbers live on each arm's own run
    tracking.log_metrics(run_id, {f"test_acc.{r.arm.replace('/', '.')}": r.test_acc for r in rows})
    tracking.log_metrics(run_id, model_card.class_metrics(evaluation))  # per-class truth
    log_arm_runs(evaluation, results)
    tracking.log_bytes(run_id, "predictions.parquet", predictions_parquet(evaluation))
    table = table_markdown(rows) + removed_note(job.split)
    tracking.log_text(run_id, "accuracy_table.md", table)
    return evaluation, rows


def log_arm_runs(evaluation: Evaluation, results: list[ArmResult]) -> None:
    """``test_accuracy`` and ``val_accuracy`` on each arm's stage run, one seed per run: the same
    metric names on every child run, so MLflow's Compare and chart views line the arms up."""
    for result in results:
        scores = evaluation.arms.get(result.spec.arm)
        run_id = result.stage.mlflow_run_id if result.stage else None
        if scores is None or not run_id or result.spec.seed not in scores.seeds:
            continue
        i = scores.seeds.index(result.spec.seed)
        tracking.log_metrics(
            run_id, {"test_accuracy": scores.test_acc[i], "val_accuracy": scores.val_acc[i]}
        )


def _served_model(evaluation: Evaluation, results: list[ArmResult], job: Job):
    """The candidate's best-on-validation seed, its weights and float test images."""
    served = promotion.served_result(evaluation, results)
    model = stages.load_arm_model(served, job)
    ds, splits = stages.load_target(job)
    x_test = ds.images[splits.test].astype(np.float32) / 255.0
    return served, model, x_test


def _log_confusion(run_id: str, evaluation: Evaluation, arm: str) -> None:
    """The served seed's confusion matrix, from the predictions the evaluation stage made (no
    model runs here)."""
    scores = evaluation.arms[arm]
    pred = np.asarray(scores.pred[promotion.served_index(scores)])
    y = np.asarray(evaluation.y_test)
    fig = plots.confusion_matrix_figure(
        y, pred, evaluation.classes, title="served model, test split"
    )
    tracking.log_bytes(run_id, "confusion_matrix.png", plots.figure_png(fig))


@task(name="register-and-promote", cache_policy=NO_CACHE, **IO_RETRIES)
def register_and_promote(
    scored: tuple[Evaluation, list[TableRow]],
    results: list[ArmResult],
    sources: dict[str, SourceModel],
    job: Job,
    started: float,
) -> dict:
    """Select on validation, gate on test (vs scratch on the confirmation seeds, vs the
    champion), and register + move ``champion`` (compare-and-set) only as the policy allows;
    publish the report."""
    evaluation, rows = scored
    served, model, x_test = _served_model(evaluation, results, job)
    source = sources.get(served.spec.strategy or "")
    mine, _ = job.of(served.spec.strategy)  # its own source: tags and card name the right one
    if job.params.register_model:
        outcome = promotion.promote(
            evaluation,
            served,
            model,
            job=mine,
            source=source,
            example=x_test[:4],
            score_version=promotion.test_set_scorer(x_test, np.asarray(evaluation.y_test)),
        )
        decision = outcome.decision
    else:
        outcome = None
        candidate = promotion.select_candidate(evaluation)
        decision = promotion.decide(
            candidate,
            evaluation.arms["scratch"],
            margin=job.params.margin,
            blocked=job.leakage,
            weights=gate_weights(job, evaluation),
            class_drops=gate_class_drops(evaluation, candidate.arm),
        )
    _log_confusion(job.run.run_id, evaluation, decision.candidate)
    stage_records = [r.stage for r in results] + [s.stage for s in sources.values() if s.stage]
    if outcome is not None and outcome.version:
        wall = time.time() - started
        publish_card(evaluation, decision, outcome, rows, stage_records, mine, wall)
    publish(decision, outcome, rows, job, time.time() - started)
    summary = flow_summary(decision, outcome, rows, stage_records, job)
    summary["event"] = emit_verdict(decision, outcome, summary["model_name"], job)["event"]
    candidate = evaluation.arms[decision.candidate]
    summary["served_test_accuracy"] = candidate.test_acc[promotion.served_index(candidate)]
    return summary


def publish(
    decision: promotion.Decision,
    outcome: promotion.Promotion | None,
    rows: list[TableRow],
    job: Job,
    wall_seconds: float,
) -> None:
    """The verdict and table everywhere a user looks (MLflow parent run, Prefect artifacts, the
    log) and the parent run ended."""
    run = job.run
    context = {
        "flow_run_id": run.flow_run_id,
        "target": job.target.name,
        "k_shot": job.split.k_shot,
    }
    if job.plan.pruned:  # `run --sources … --top M`: the candidates the ranking left out
        context["sources"] = job.plan.pruned
    report_json, report_md = gate_report(decision, rows, promotion=outcome, context=context)
    tracking.log_text(run.run_id, "gate_report.md", report_md)
    tracking.log_text(run.run_id, "gate_report.json", report_json)
    tracking.set_tags(run.run_id, decision.tags())
    publish_report(
        report_md,
        artifact_key("gate-verdict", job.target.name),
        table_cells(rows),
        artifact_key("accuracy-table", job.target.name),
        f"gate: {decision.verdict} — {job.target.name}, k={job.split.k_shot}",
    )
    d = decision.delta_vs_scratch
    gate = {"gate_promoted": float(decision.passed), "gate_delta_vs_scratch": d["mean_diff"]}
    gate |= {"gate_delta_ci_low": d["ci_low"], "gate_delta_ci_high": d["ci_high"]}
    tracking.log_metrics(run.run_id, {**gate, "flow_wall_seconds": wall_seconds})
    tracking.end_run(run.run_id)
    get_run_logger().info("gate: %s — %s", decision.verdict, decision.reason)


def flow_summary(
    decision: promotion.Decision,
    outcome: promotion.Promotion | None,
    rows: list[TableRow],
    stage_records: list[StageRecord],
    job: Job,
) -> dict:
    """The flow's return value, JSON-ready: verdict, table, registry outcome, reuse counts."""
    version = outcome.version if outcome else None
    # The name the version is (or would be) registered under: it carries the target's geometry.
    model_name = outcome.model_name if outcome else promotion.registry.model_name(job.target)
    experiment_url = f"{tracking.tracking_uri()}/#/experiments/{job.run.experiment_id}"
    return {
        "verdict": decision.verdict,
        "passed": decision.passed,
        "reason": decision.reason,
        "rule": decision.rule,
        "candidate": decision.candidate,
        "metric": decision.delta_vs_scratch.get("metric", "accuracy"),
        "class_drops": decision.class_drops,
        "table": [r.to_dict() for r in rows],
        "model_name": model_name,
        "version": version,
        "model_uri": f"models:/{model_name}/{version}" if version else None,
        "champion_version": outcome.champion_version if outcome else None,
        "flow_run_id": job.run.flow_run_id,
        "pruned": job.plan.pruned or None,
        "trained": sum(not st.reused for st in stage_records),
        "reused": sum(st.reused for st in stage_records),
        "resumed": sum(bool(st.resumed_from) and not st.reused for st in stage_records),
        # MLflow 3's UI opens its GenAI view unless the URL asks for the training one.
        "mlflow_run_url": f"{experiment_url}/runs/{job.run.run_id}?workflowType=machine_learning",
    }
