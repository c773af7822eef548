"""Closing what a killed process left behind: Prefect flow runs of our flows stuck in Running.

A flow run is stale when neither it nor any of its task runs changed for ``older_than_s``
seconds (``WARMSTART_STALE_AFTER_S``, default an hour: longer than any one training stage here,
since a running stage updates nothing in Prefect until it ends). It is set to Crashed with a
message saying why; its MLflow runs are closed by ``tracking.close_stale_runs`` on the same rule.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Cancelled, Crashed

from warmstart.errors import ConfigError

FLOWS = ("transfer-pipeline", "label-efficiency")
STALE_AFTER_S = 3600.0
STALE_VARIABLE = "WARMSTART_STALE_AFTER_S"


def stale_after_s() -> float:
    raw = os.environ.get(STALE_VARIABLE, "")
    try:
        return float(raw) if raw else STALE_AFTER_S
    except ValueError:
        raise ConfigError(f"{STALE_VARIABLE}={raw!r}: give seconds, e.g. 3600") from None


def _last_change(client, run: FlowRun) -> datetime:
    tasks = client.read_task_runs(
        task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run.id]))
    )
    stamps = [run.updated or run.created] + [t.updated for t in tasks if t.updated]
    return max(s for s in stamps if s is not None)


def close_stale_flow_runs(older_than_s: float, *, exclude: str | None = None) -> list[str]:
    """Set our flow runs that are Running but silent for ``older_than_s`` to Crashed."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    closed = []
    with get_client(sync_client=True) as client:
        running = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOWS))),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
            ),
        )
        for run in running:
            if str(run.id) == exclude or _last_change(client, run) > cutoff:
                continue
            message = (
                f"closed as stale by a later run: no change for over {older_than_s:.0f} s "
                "(its process was killed)"
            )
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            closed.append(str(run.id))
    return closed


def cancel_flow_run(flow_run_id: str, reason: str, *, over_final: bool = False) -> None:
    """Mark a flow run of this process Cancelled: if it has not ended already or, with
    ``over_final``, over the Failed its flow reported when its stages stopped."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        state = run.state
        if state is None or not state.is_final() or (over_final and not state.is_cancelled()):
            client.set_flow_run_state(flow_run_id, Cancelled(message=reason), force=True)
