"""Select on validation, gate on test, register in MLflow, move ``champion`` only through the gate."""

from __future__ import annotations

import numpy as np

from warmstart import gate, tracking
from warmstart.errors import TrackingError
from warmstart.params import PipelineParams

CONTROL_PREFIX = "control/"


def candidates(evaluation: dict) -> list[dict]:
    """Transfer arms only (scratch and controls are never candidates), with validation numbers only."""
    out = []
    for name, arm in evaluation["arms"].items():
        if name == "scratch" or name.startswith(CONTROL_PREFIX) or not arm["strategy"]:
            continue
        out.append(
            {
                "arm": name,
                "strategy": arm["strategy"],
                "transfer_mode": arm["mode"],
                "val_acc": float(np.mean(arm["val_acc"])),
            }
        )
    return out


def gate_and_register(
    evaluation: dict,
    results: list[dict],
    pretrains: dict[str, dict],
    source: dict,
    target: dict,
    params: PipelineParams,
    run: dict,
) -> dict:
    from warmstart import pipeline as core

    arms = evaluation["arms"]
    chosen = gate.select_candidate(candidates(evaluation))
    arm = arms[chosen["arm"]]
    cand_correct = np.asarray(arm["correct"], dtype=bool)
    scratch_correct = np.asarray(arms["scratch"]["correct"], dtype=bool)
    # The model that would be served: the candidate arm's seed with the best validation accuracy.
    best = int(np.argmax(arm["val_acc"]))
    served_correct = cand_correct[best : best + 1]
    served = next(r for r in results if r["key"] == arm["keys"][best])
    y_test = np.asarray(evaluation["y_test"])
    model_name = tracking.model_name_for(target["name"])

    champion_correct, champion_v, incomparable = None, None, None
    x_test = None
    if params.register_model:
        from warmstart.data import load_dataset, load_splits

        ds = load_dataset(target["hash"])
        x_test = ds.images[load_splits(run["split_hash"]).test].astype(np.float32) / 255.0
        current = tracking.champion_version(model_name)
        if current is not None:
            champion_v = current.version
            try:
                preds = tracking.champion_predictions(model_name, x_test)
                champion_correct = (preds == y_test)[None, :]
            except TrackingError as exc:
                incomparable = str(exc)

    decision = gate.decide(
        chosen["arm"],
        cand_correct,
        scratch_correct,
        champion_correct=champion_correct,
        margin=params.margin,
        champion_version=champion_v,
        candidate_served_correct=served_correct,
    )
    if incomparable:
        decision.passed = False
        decision.verdict = "not promoted"
        decision.reason = f"Not promoted: the current champion cannot be compared on this test data ({incomparable})."

    registered: dict = {}
    if params.register_model:
        model = core.load_arm_model(served, target, params)
        tags = {
            "strategy": arm["strategy"],
            "transfer_mode": arm["mode"],
            "seed": served["seed"],
            "source_dataset_hash": source["hash"],
            "target_dataset_hash": target["hash"],
            "split_hash": run["split_hash"],
            "checkpoint_uri": served["checkpoint_uri"],
            "k_shot": params.k_shot,
            "flow_run_id": run["flow_run_id"],
        }
        with tracking.stage_run(
            "register-and-promote",
            experiment_id=run["experiment_id"],
            parent_run_id=run["run_id"],
            tags={"warmstart.stage": "register_and_promote"},
        ) as reg_run:
            info = _log_model(model, x_test, tags)
            _log_confusion(model, x_test, y_test, evaluation["classes"])
            registered = tracking.register_and_promote(
                model_name=model_name,
                model_uri=info.model_uri,
                run_id=reg_run.info.run_id,
                decision=decision,
                tags=tags,
                test_correct=served_correct,
            )

    stages = list(results) + list(pretrains.values())
    report = {
        "decision": decision.to_dict(),
        "candidate": chosen,
        "served_seed": served["seed"],
        "served_test_accuracy": float(served_correct.mean()),
        "table": evaluation["table"],
        "registered": registered,
        "model_name": model_name,
    }
    md = decision.to_markdown()
    if registered:
        md += (
            f"\n\nRegistered `{model_name}` version {registered['version']}; champion is "
            f"version {registered['champion_version']}."
        )
    summary = {
        "verdict": decision.verdict,
        "passed": decision.passed,
        "reason": decision.reason,
        "candidate": chosen["arm"],
        "table": evaluation["table"],
        "model_name": model_name,
        "version": registered.get("version"),
        "model_uri": f"models:/{model_name}/{registered['version']}" if registered else None,
        "champion_version": registered.get("champion_version"),
        "served_test_accuracy": float(served_correct.mean()),
        "flow_run_id": run["flow_run_id"],
        "trained": sum(not r["reused"] for r in stages),
        "reused": sum(bool(r["reused"]) for r in stages),
        "resumed": sum(bool(r.get("resumed_from")) and not r["reused"] for r in stages),
        "mlflow_run_url": f"{tracking.configure()}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}",
    }
    return {"decision": decision.to_dict(), "markdown": md, "report": report, "summary": summary}


def _log_model(model, x_test: np.ndarray, tags: dict):
    try:
        return tracking.log_torch_model(model, example=x_test[:4], tags=tags, serialization="pt2")
    except tracking.ExportError:
        # torch.export could not trace this backbone: fall back to the pickle format (the
        # module's classes come from the installed `models` package).
        return tracking.log_torch_model(
            model, example=x_test[:4], tags=tags, serialization="pickle"
        )


def _log_confusion(model, x_test: np.ndarray, y_test: np.ndarray, classes: list[str]) -> None:
    import torch

    with torch.no_grad():
        pred = model(torch.from_numpy(x_test)).argmax(1).numpy()
    tracking.log_confusion_matrix(y_test, pred, classes, title="served model, test split")
