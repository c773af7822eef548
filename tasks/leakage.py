"""The leakage guard as a Prefect task: the first step after ingestion and the split, before any
training. A thin wrapper over ``warmstart.stages.leakage`` that records the counts on the MLflow
pipeline run, retires a champion trained on the same leaky inputs, and refuses the run (one
line) unless ``allow_leakage``; then the job it returns can never be promoted. A run that goes on
under the tolerance gets the split less every flagged validation and test image: every arm,
scratch and controls included, selects and is evaluated on the clean part."""

from __future__ import annotations

import dataclasses
import json

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from warmstart import tracking
from warmstart.contracts import DatasetRef, Job, SplitRef
from warmstart.promotion.registry import model_name, retire_leaky_champion
from warmstart.stages import leakage
from warmstart.tasks.pipeline import IO_RETRIES


@task(name="check-leakage", cache_policy=NO_CACHE, **IO_RETRIES)
def check_leakage(job: Job, sources: tuple[DatasetRef | None, ...]) -> Job:
    """Compare each planned source (its ingested dataset, or None) and the unsupervised pool
    with the target's validation and test images; raise ``LeakageError`` on overlap above the
    tolerance unless ``allow_leakage``; else the job on the split less the flagged images (an
    allowed leaky run keeps its split whole: it measures memory, and is never promoted)."""
    report = leakage.check_job(job, tuple(d.hash if d else None for d in sources))
    source = next((d for d in sources if d is not None), None)
    learned = {"source_labels": report.source_labels, "labels_by_source": report.labels_by_source}
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
        return dataclasses.replace(job, leakage=blocked, **learned)
    split = leakage.remove_flagged(job, report)
    log_removed(job, split, report)
    return dataclasses.replace(job, split=split, **learned)


def log_removed(job: Job, split: SplitRef, report: leakage.LeakageReport) -> None:
    """How many validation and test images every arm is evaluated without (0 is logged too), the
    split they were removed from, and their positions and dataset indices (``leakage.json``)."""
    run_id = job.run.run_id
    removed = {"validation": split.removed_val, "test": split.removed_test}
    tracking.log_metrics(run_id, {f"leakage.removed.{s}": float(n) for s, n in removed.items()})
    tracking.log_metrics(run_id, {"target_val": split.val, "target_test": split.test})
    tags = {"leakage_removed": f"validation {split.removed_val}, test {split.removed_test}"}
    if split.hash != job.split.hash:
        tags |= {"split_hash": split.hash, "split_hash_before_leakage_removal": job.split.hash}
    tracking.set_tags(run_id, tags)
    tracking.log_text(run_id, "leakage.json", json.dumps(leakage.removal_record(job, report)))
    get_run_logger().info(
        "leakage guard: evaluating every arm without %d validation and %d test images (split %s)",
        split.removed_val,
        split.removed_test,
        split.hash[:12],
    )
