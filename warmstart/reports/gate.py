"""The gate report: the verdict, its numbers, the registry outcome and the results table, as
JSON and Markdown (one text for the MLflow artifact and the Prefect Markdown artifact)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from warmstart.contracts import TableRow
from warmstart.promotion.policy import Decision
from warmstart.reports.table import table_markdown

if TYPE_CHECKING:
    from warmstart.promotion.registry import Promotion


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def registry_line(promotion: Promotion) -> str:
    """What the registry did, in one sentence."""
    p = promotion
    if p.version is None:
        return f"Nothing registered in `{p.model_name}`; champion is version {p.champion_version}."
    what = "Registered" if p.registered else "Kept (identical weights)"
    return f"{what} `{p.model_name}` version {p.version}; champion is version {p.champion_version}."


def gate_report(
    decision: Decision,
    rows: Sequence[TableRow] = (),
    *,
    promotion: Promotion | None = None,
    context: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """The report as (JSON, Markdown). ``context`` (flow run id, target, k_shot …) is copied in."""
    payload = {
        "decision": decision.to_dict(),
        "promotion": promotion.to_dict() if promotion is not None else None,
        "table": [r.to_dict() for r in rows],
        "context": dict(context or {}),
    }
    md = [decision.to_markdown()]
    if promotion is not None:
        md += [registry_line(promotion), ""]
    if context:
        md += ["### Run", ""] + [f"- **{k}**: {v}" for k, v in context.items()] + [""]
    if rows:
        md += ["### All arms (selection on validation; test reported once)", ""]
        md.append(table_markdown(rows))
    return json.dumps(payload, indent=2, default=_json_default), "\n".join(md)
