"""The summary `warmstart run` prints: the results table (the same cells as the Prefect table
and the MLflow Markdown), the verdict, and where to look."""

from __future__ import annotations

import os

from rich.console import Console
from rich.table import Table

from warmstart.cli.app import console
from warmstart.contracts import TableRow
from warmstart.reports.table import COLUMNS, NOTE, TITLE, table_cells


def print_summary(summary: dict, seconds: float) -> None:
    table = Table(*COLUMNS, title=TITLE, caption=NOTE)
    for cells in table_cells([TableRow.from_dict(r) for r in summary["table"]]):
        table.add_row(*cells.values())
    out = console if console.is_terminal else Console(width=160)
    out.print(table)
    colour = "green" if summary["passed"] else "yellow"
    console.print(f"[bold {colour}]{summary['verdict']}[/]: {summary['reason']}", highlight=False)
    if summary.get("pruned"):
        console.print(f"sources: {summary['pruned']}", highlight=False)
    if summary.get("model_uri"):
        console.print(f"model: {summary['model_uri']}", highlight=False)
    console.print(f"wall time {seconds:.1f} s")
    if summary.get("time_summary"):  # stages trained in this process (not on Dask workers)
        console.print(summary["time_summary"], highlight=False)
    prefect_ui = os.environ.get("PREFECT_API_URL", "").removesuffix("/api")
    flow_run = summary.get("flow_run_id", "")
    console.print(f"Prefect UI: {prefect_ui}/runs/flow-run/{flow_run}", highlight=False)
    console.print(f"MLflow UI:  {summary.get('mlflow_run_url', '')}", highlight=False)
