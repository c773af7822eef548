"""The model card of the version a pipeline run registered (or kept): rendered by
``warmstart.reports.model_card`` from the run's records, then put where users look — the version's
description, an artifact ``model_card.md`` of the version's run and of the pipeline run, and a
Prefect Markdown artifact ``model-card-<target>``."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from warmstart import promotion, tracking
from warmstart.contracts import Evaluation, Job, StageRecord, TableRow
from warmstart.reports import model_card
from warmstart.tasks.flow_artifacts import artifact_key


def leakage_facts(run_id: str) -> dict:
    """The leakage guard's counts (``leakage.*`` metrics) and line, from the pipeline run."""
    metrics, tags = tracking.run_data(run_id)
    counts = {k: v for k, v in metrics.items() if k.startswith("leakage.")}
    return {"report": tags.get("leakage_report", "not checked"), "counts": counts}


def publish_card(
    evaluation: Evaluation,
    decision: promotion.Decision,
    outcome: promotion.Promotion,
    rows: list[TableRow],
    records: list[StageRecord],
    job: Job,
    wall_seconds: float,
) -> str:
    """Render the card of ``outcome.version`` and publish it; returns the Markdown."""
    name, version = outcome.model_name, str(outcome.version)
    ref = tracking.find_versions(name, "weights_sha256", outcome.weights_sha256 or "") or []
    tags = ref[0].tags if ref else {}
    candidate = evaluation.arms[decision.candidate]
    facts = model_card.card_facts(
        name=name,
        version=version,
        job=job,
        evaluation=evaluation,
        candidate=decision.candidate,
        served_index=promotion.served_index(candidate),
        verdict_markdown=decision.to_markdown(),
        tags=tags,
        leakage=leakage_facts(job.run.run_id),
        records=records,
        wall_seconds=wall_seconds,
        pretrain_images=sum(r.pretrain_images for r in rows),
    )
    card = model_card.render_card(facts)
    tracking.set_card(name, version, card, model_card.CARD_MARKER)
    if ref and ref[0].run_id:
        tracking.log_text(ref[0].run_id, f"model_card/v{version}.md", card)
    tracking.log_text(job.run.run_id, "model_card.md", card)
    create_markdown_artifact(
        markdown=card,
        key=artifact_key("model-card", job.target.name),
        description=f"model card: {name} version {version}",
    )
    return card
