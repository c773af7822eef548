"""The leakage guard as a Prefect task: the first step after ingestion and the split, before any
training. A thin wrapper over ``warmstart.stages.leakage`` that records the counts on the MLflow
pipeline run, retires a champion trained on the same leaky inputs, and refuses the run (one
line) unless ``allow_leakage``; then the job it returns can never be promoted."""

from __future__ import annotations

import dataclasses

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from warmstart import tracking
from warmstart.contracts import DatasetRef, Job
from warmstart.promotion.registry import model_name, retire_leaky_champion
from warmstart.stages import leakage
from warmstart.tasks.pipeline import IO_RETRIES


@task(name="check-leakage", cache_policy=NO_CACHE, **IO_RETRIES)
def check_leakage(job: Job, source: DatasetRef | None) -> Job:
    """Compare the source and the unsupervised pool with the target's validation and test
    images; raise ``LeakageError`` on overlap above the tolerance unless ``allow_leakage``."""
    report = leakage.check_job(job, source.hash if source else None)
    run_id, logger = job.run.run_id, get_run_logger()
    tracking.log_metrics(run_id, report.metrics())
    tracking.set_tags(
        run_id, {"leakage": "found" if report.leaky else "none", "leakage_report": report.message()}
    )
    logger.info("leakage guard: %s", report.message())
    if report.leaky:
        data = (source.hash if source else None, job.target.hash, job.split.hash)
        name = model_name(job.target)
        retired = retire_leaky_champion(name, data, report.message())
        if retired:
            logger.warning("%s version %s lost the champion alias: leakage", name, retired)
    blocked = leakage.enforce(report, allow=job.params.allow_leakage)
    if blocked:
        logger.warning("running with --allow-leakage: the candidate will not be promoted")
        tracking.set_tags(run_id, {"leakage_allowed": "true"})
    return dataclasses.replace(job, leakage=blocked) if blocked else job
