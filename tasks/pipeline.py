"""Prefect tasks of the transfer pipeline: thin wrappers over ``warmstart.pipeline`` that add
tracking (MLflow nested runs, Prefect artifacts), retries on I/O only, and the ``gpu`` tag.

Caching is ours, not Prefect's: every training stage is keyed on content hashes of its inputs and
stored in S3 (``warmstart.runstore``), so Prefect's input-pickling cache is off (``NO_CACHE``).
"""

from __future__ import annotations

import io
import time

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from warmstart import mlruns, tracking
from warmstart import pipeline as core
from warmstart.errors import StorageError, TrackingError
from warmstart.params import PipelineParams


def _io_only(task, task_run, state) -> bool:
    """Retry only when storage or tracking failed, never on bad input or compute errors."""
    try:
        state.result()
    except (StorageError, TrackingError, ConnectionError, TimeoutError):
        return True
    except Exception:  # noqa: BLE001
        return False
    return False


IO_RETRIES = dict(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=_io_only,
)


TRAIN_OPTS = dict(
    tags=["gpu"],
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=_io_only,
)


@task(name="validate-params", cache_policy=NO_CACHE)
def validate_params(params: PipelineParams) -> None:
    core.validate(params)


@task(name="open-tracking", cache_policy=NO_CACHE, **IO_RETRIES)
def open_tracking(
    params: PipelineParams, target_name: str, flow_run_id: str, kind: str = "pipeline"
) -> dict:
    tracking.configure(timeout=5)
    exp = mlruns.experiment_id(target_name)
    run_id = mlruns.start_run(
        exp,
        f"{kind.replace('_', '-')}-{flow_run_id[:8]}",
        params=params.model_dump(),
        tags={"warmstart.flow_run_id": flow_run_id, "warmstart.kind": kind},
    )
    return {"experiment_id": exp, "run_id": run_id, "flow_run_id": flow_run_id}


@task(name="ingest", task_run_name="ingest[{role}]", cache_policy=NO_CACHE, **IO_RETRIES)
def ingest(spec: str, role: str, like: dict | None = None) -> dict:
    log = get_run_logger()
    ref = core.ingest(spec, like=like)
    what = "uploaded" if ref["uploaded"] else "already stored, nothing uploaded"
    log.info(
        "%s %s: %d images %dx%dx%d, %d classes, sha256 %s (%s)",
        role,
        ref["spec"],
        ref["count"],
        ref["channels"],
        *ref["size"],
        ref["num_classes"],
        ref["hash"][:12],
        what,
    )
    return ref


@task(name="log-inputs", cache_policy=NO_CACHE, **IO_RETRIES)
def log_inputs(tracking: dict, source: dict, target: dict, split: dict) -> None:
    run_id = tracking["run_id"]
    mlruns.log_dataset_inputs(run_id, {"source": source, "target": target})
    mlruns.log_metrics(
        run_id,
        {"target_train": split["train"], "target_val": split["val"], "target_test": split["test"]},
    )
    mlruns.set_tags(
        run_id,
        {
            "source_dataset_hash": source["hash"],
            "target_dataset_hash": target["hash"],
            "split_hash": split["hash"],
            "source_spec": source["spec"],
            "target_spec": target["spec"],
        },
    )


@task(name="make-splits", cache_policy=NO_CACHE, **IO_RETRIES)
def make_splits(target: dict, params: PipelineParams) -> dict:
    split = core.make_target_splits(target, params)
    get_run_logger().info(
        "splits %s: train %d (k=%d per class), val %d, test %d, unlabelled pool %d",
        split["hash"][:12],
        split["train"],
        params.k_shot,
        split["val"],
        split["test"],
        split["unlabelled"],
    )
    return split


class _Progress:
    """Per-epoch reporting: MLflow metrics on the stage's nested run + a Prefect progress artifact."""

    def __init__(self, run_id: str, total_epochs: int, description: str):
        self.run_id = run_id
        self.total = max(1, total_epochs)
        self.artifact_id = create_progress_artifact(progress=0.0, description=description)

    def __call__(self, epoch: int, metrics: dict) -> None:
        mlruns.log_metrics(self.run_id, metrics, step=epoch)
        update_progress_artifact(self.artifact_id, progress=min(100.0, 100.0 * epoch / self.total))


def _stage(tracking: dict, name: str, params: dict, tags: dict) -> str:
    return mlruns.start_run(
        tracking["experiment_id"], name, parent=tracking["run_id"], params=params, tags=tags
    )


def _log_history(run_id: str, history: list[dict]) -> None:
    for row in history:
        step = int(row.get("epoch", 0))
        mlruns.log_metrics(run_id, {k: v for k, v in row.items() if k != "epoch"}, step=step)


def _run_stage(run_id: str, name: str, train) -> dict:
    """Run a training stage inside its MLflow run: FAILED on error; say whether it was reused
    from S3 (its stored history is logged again) or resumed from an epoch checkpoint."""
    log = get_run_logger()
    try:
        result = train()
    except Exception:
        mlruns.end_run(run_id, "FAILED")
        raise
    if result["reused"]:
        log.info("%s reused from %s (no training)", name, result["checkpoint_uri"])
        _log_history(run_id, result["history"])
    elif result.get("resumed_from"):
        log.info("%s resumed from epoch %s checkpoint", name, result["resumed_from"])
    return result


@task(name="pretrain-source", task_run_name="pretrain-source[{strategy}]", **TRAIN_OPTS)
def pretrain_source(
    strategy: str, source: dict, target: dict, split: dict, params: PipelineParams, tracking: dict
) -> dict:
    name = f"pretrain-source[{strategy}]"
    run_id = _stage(
        tracking,
        name,
        {
            "strategy": strategy,
            "backbone": params.backbone,
            "epochs": params.pretrain_epochs,
            "unsupervised_data": params.unsupervised_data,
        },
        {"warmstart.stage": "pretrain_source", "strategy": strategy},
    )
    progress = _Progress(run_id, params.pretrain_epochs, name)
    result = _run_stage(
        run_id,
        name,
        lambda: core.pretrain_source(strategy, source, target, split, params, report=progress),
    )
    mlruns.log_metrics(run_id, {"seconds": result["seconds"]})
    from warmstart import storage

    for art_name, uri in result.get("artifacts", {}).items():
        data = storage.get_bytes(storage.parse_s3_uri(uri))
        mlruns.log_bytes(run_id, f"{art_name}.png", data)
    _curves(run_id, {strategy: result["history"]})
    mlruns.client().set_tag(run_id, "checkpoint_uri", result["checkpoint_uri"])
    mlruns.end_run(run_id)
    progress(params.pretrain_epochs, {})
    return {**result, "mlflow_run_id": run_id}


def _curves(run_id: str, histories: dict[str, list[dict]]) -> None:
    try:
        from warmstart import reports

        fig = reports.learning_curves_figure(histories)
        mlruns.log_bytes(run_id, "learning_curves.png", reports.figure_png(fig))
    except Exception as exc:  # noqa: BLE001 - a plot must never fail a training stage
        get_run_logger().warning("learning curves not plotted: %s", exc)


def _train(
    pretrain: dict | None,
    strategy: str | None,
    mode: str,
    seed: int,
    arm: str,
    stage: str,
    target: dict,
    split: dict,
    params: PipelineParams,
    tracking: dict,
) -> dict:
    name = f"{stage}[{arm}/seed={seed}]"
    run_id = _stage(
        tracking,
        name,
        {
            "arm": arm,
            "strategy": strategy or "none",
            "transfer_mode": mode,
            "seed": seed,
            "backbone": params.backbone,
            "epochs": params.finetune_epochs,
            "k_shot": params.k_shot,
        },
        {
            "warmstart.stage": stage,
            "strategy": strategy or "none",
            "transfer_mode": mode,
            "seed": str(seed),
        },
    )
    progress = _Progress(run_id, params.finetune_epochs, name)
    result = _run_stage(
        run_id,
        name,
        lambda: core.finetune_target(
            pretrain, mode, seed, target, split, params, arm=arm, report=progress
        ),
    )
    mlruns.log_metrics(run_id, {"best_val_acc": result["val_acc"], "seconds": result["seconds"]})
    mlruns.client().set_tag(run_id, "checkpoint_uri", result["checkpoint_uri"])
    _curves(run_id, {arm: result["history"]})
    mlruns.end_run(run_id)
    progress(params.finetune_epochs, {})
    return {**result, "mlflow_run_id": run_id}


@task(
    name="finetune-target",
    task_run_name="finetune-target[{strategy}/{mode}/seed={seed}]",
    **TRAIN_OPTS,
)
def finetune_target(
    pretrain: dict,
    strategy: str,
    mode: str,
    seed: int,
    target: dict,
    split: dict,
    params: PipelineParams,
    tracking: dict,
) -> dict:
    return _train(
        pretrain,
        strategy,
        mode,
        seed,
        f"{strategy}/{mode}",
        "finetune-target",
        target,
        split,
        params,
        tracking,
    )


@task(
    name="train-scratch-baseline", task_run_name="train-scratch-baseline[seed={seed}]", **TRAIN_OPTS
)
def train_scratch_baseline(
    seed: int, target: dict, split: dict, params: PipelineParams, tracking: dict
) -> dict:
    return _train(
        None,
        None,
        "finetune",
        seed,
        "scratch",
        "train-scratch-baseline",
        target,
        split,
        params,
        tracking,
    )


@task(
    name="train-control",
    task_run_name="train-control[random-init-frozen/seed={seed}]",
    **TRAIN_OPTS,
)
def train_control(
    seed: int, target: dict, split: dict, params: PipelineParams, tracking: dict
) -> dict:
    """Control: a random-init frozen backbone with a trained head."""
    return _train(
        None,
        None,
        "linear_probe",
        seed,
        "control/random-init-frozen",
        "train-control",
        target,
        split,
        params,
        tracking,
    )


@task(name="evaluate", cache_policy=NO_CACHE, **IO_RETRIES)
def evaluate(
    results: list[dict],
    pretrains: dict[str, dict],
    target: dict,
    split: dict,
    params: PipelineParams,
    tracking: dict,
) -> dict:
    from warmstart import reports

    ev = core.evaluate(results, target, split, params)
    rows = core.summarize(ev, pretrains)
    ev["table"] = rows
    run_id = tracking["run_id"]
    for row in rows:
        key = row["arm"].replace("/", ".")
        mlruns.log_metrics(
            run_id,
            {
                f"test_acc.{key}": row["test_acc"],
                f"val_acc.{key}": row["val_acc"],
                f"delta_vs_scratch.{key}": row["delta_vs_scratch"],
            },
        )
    # Per-example predictions of every arm and seed (parquet) for paired statistics later.
    import pandas as pd

    frames = []
    for name, arm in ev["arms"].items():
        for i, seed in enumerate(arm["seeds"]):
            frames.append(
                pd.DataFrame(
                    {
                        "arm": name,
                        "seed": seed,
                        "test_index": ev["test_index"],
                        "label": ev["y_test"],
                        "pred": arm["pred"][i],
                        "correct": arm["correct"][i],
                    }
                )
            )
    buf = io.BytesIO()
    pd.concat(frames).to_parquet(buf, index=False)
    mlruns.log_bytes(run_id, "predictions.parquet", buf.getvalue())
    mlruns.log_text(run_id, "accuracy_table.md", reports.table_markdown(_table_rows(rows)))
    return ev


def _table_rows(rows: list[dict]) -> list[dict]:
    def pct(x):
        return f"{100 * x:.1f}"

    return [
        {
            "arm": r["arm"],
            "seeds": r["seeds"],
            "val acc %": pct(r["val_acc"]),
            "test acc % (95% CI)": f"{pct(r['test_acc'])} [{pct(r['test_ci'][0])}, {pct(r['test_ci'][1])}]",
            "Δ vs scratch pts (95% CI)": f"{100 * r['delta_vs_scratch']:+.1f} "
            f"[{100 * r['delta_ci'][0]:+.1f}, {100 * r['delta_ci'][1]:+.1f}]",
            "pretrain s": f"{r['pretrain_seconds']:.1f}",
            "fine-tune s": f"{r['finetune_seconds']:.1f}",
        }
        for r in rows
    ]


@task(name="register-and-promote", cache_policy=NO_CACHE, **IO_RETRIES)
def register_and_promote(
    evaluation: dict,
    results: list[dict],
    pretrains: dict[str, dict],
    source: dict,
    target: dict,
    split: dict,
    params: PipelineParams,
    tracking: dict,
    started: float,
) -> dict:
    """Select on validation, gate on test (paired bootstrap vs scratch and the champion),
    register the candidate, move `champion` only if the gate passes; publish the report."""
    from warmstart import promotion

    run = {**tracking, "split_hash": split["hash"]}
    outcome = promotion.gate_and_register(
        evaluation, results, pretrains, source, target, params, run
    )
    decision = outcome["decision"]
    md = outcome["markdown"]
    mlruns.log_text(tracking["run_id"], "gate_report.md", md)
    mlruns.log_text(tracking["run_id"], "gate_report.json", core.dumps(outcome["report"]))
    c = mlruns.client()
    c.set_tag(tracking["run_id"], "gate_verdict", decision["verdict"])
    c.set_tag(tracking["run_id"], "gate_reason", decision["reason"][:4000])
    create_markdown_artifact(
        markdown=md, key="gate-verdict", description=f"gate: {decision['verdict']}"
    )
    create_table_artifact(
        table=_table_rows(evaluation["table"]),
        key="accuracy-table",
        description="strategy × mode vs scratch (test split, 95% CI)",
    )
    wall = time.time() - started
    mlruns.log_metrics(tracking["run_id"], {"flow_wall_seconds": wall})
    mlruns.end_run(tracking["run_id"])
    get_run_logger().info("gate: %s — %s", decision["verdict"], decision["reason"])
    return outcome["summary"]
