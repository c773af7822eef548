"""A Prefect event on every verdict, for automations (README: "Automations"):
``warmstart.model.promoted`` or ``warmstart.model.refused``, about the resource
``warmstart.model.<registered model name>.<version>`` (``.none`` when nothing was registered),
with the gate's numbers as payload."""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

from warmstart import promotion
from warmstart.contracts import Job

PROMOTED = "warmstart.model.promoted"
REFUSED = "warmstart.model.refused"


def verdict_event(
    decision: promotion.Decision, outcome: promotion.Promotion | None, model_name: str, job: Job
) -> dict[str, Any]:
    """The event's name, resource and payload (pure)."""
    version = outcome.version if outcome else None
    promoted = bool(decision.passed and outcome and outcome.champion_version == version)
    d = decision.delta_vs_scratch
    return {
        "event": PROMOTED if promoted else REFUSED,
        "resource": {
            "prefect.resource.id": f"warmstart.model.{model_name}.{version or 'none'}",
            "prefect.resource.name": model_name,
            "warmstart.model": model_name,
            "warmstart.version": str(version or ""),
            "warmstart.target": job.target.name,
        },
        "payload": {
            "verdict": decision.verdict,
            "rule": decision.rule,
            "reason": decision.reason,
            "candidate": decision.candidate,
            "delta": d["mean_diff"],
            "ci_low": d["ci_low"],
            "ci_high": d["ci_high"],
            "margin": decision.margin,
            "model_uri": f"models:/{model_name}/{version}" if version else None,
            "champion_version": outcome.champion_version if outcome else None,
            "k_shot": job.split.k_shot,
            "flow_run_id": job.run.flow_run_id,
        },
    }


def emit_verdict(
    decision: promotion.Decision, outcome: promotion.Promotion | None, model_name: str, job: Job
) -> dict[str, Any]:
    """Emit the verdict's event (sent by Prefect's events worker); returns what was sent."""
    event = verdict_event(decision, outcome, model_name, job)
    emit_event(**event)
    return event
