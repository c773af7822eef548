"""The report artifacts a flow run shows first: a Markdown verdict (or report) and its table,
keyed per target, attached to the flow run itself rather than to the task that made them.

Prefect's flow-run Artifacts tab lists the flow run's own artifacts above every task run's (the
per-stage progress cards), each group in descending artifact id. Ids are random UUIDs, so the
pair is created again until the table's id sorts below the verdict's: the verdict comes first.
"""

from __future__ import annotations

import re
from uuid import UUID

import httpx
from prefect.artifacts import TableArtifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.utilities.context import get_task_and_flow_run_ids

# Each try is a fair coin; after this many the order is left as it fell (1 run in 65,536).
ORDER_TRIES = 16


def artifact_key(prefix: str, target: str) -> str:
    """``gate-verdict-uci-digits-5-9``: a Prefect artifact key (lowercase letters, digits and
    dashes only) naming the target, so runs on different targets keep separate histories."""
    slug = re.sub(r"[^a-z0-9]+", "-", target.lower()).strip("-") or "target"
    return f"{prefix}-{slug}"


def publish_report(
    markdown: str, markdown_key: str, table: list[dict], table_key: str, description: str
) -> tuple[UUID, UUID]:
    """The Markdown report and its table on the current flow run, the report listed first.
    Returns their artifact ids (report, table)."""
    _, flow_run_id = get_task_and_flow_run_ids()
    table_data = TableArtifact(table=table).format(_sync=True)  # NaN -> null, as Prefect does
    with get_client(sync_client=True) as client:

        def create(kind: str, key: str, data: str, text: str) -> UUID:
            body = ArtifactCreate(
                type=kind, key=key, data=data, description=text, flow_run_id=flow_run_id
            )
            return client.create_artifact(body).id

        for attempt in range(1, ORDER_TRIES + 1):
            report_id = create("markdown", markdown_key, markdown, description)
            table_id = create("table", table_key, table_data, f"table: {description}")
            if table_id < report_id or attempt == ORDER_TRIES:  # descending id: report first
                break
            client.delete_artifact(table_id)  # both again: a fresh pair is a fair coin
            client.delete_artifact(report_id)
    return report_id, table_id


def flow_run_artifacts(
    flow_run_id: str, api_url: str, auth: tuple[str, str] | None = None
) -> list[dict]:
    """A flow run's own artifacts in the order Prefect's UI lists them (the API's default sort,
    which the UI uses): for tests and checks."""
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
    response = httpx.post(f"{api_url}/artifacts/filter", json=body, auth=auth, timeout=10)
    response.raise_for_status()
    return [a for a in response.json() if not a.get("task_run_id") and a["type"] != "result"]
