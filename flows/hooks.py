"""Flow-run naming and the hooks that make every run end: a failed, crashed or cancelled flow
run ends its MLflow runs (parent and stages) as FAILED or KILLED, with the reason as a tag; when
MLflow does not answer, it records them locally for the next `warmstart up` or run to end."""

from __future__ import annotations

from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from warmstart.contracts import RunPlan
from warmstart.models.device import cpu_slots
from warmstart.params import PipelineParams
from warmstart.tasks import stage_runs


def run_name() -> str:
    """``<target> · k=<k> · <sources> × <modes> · <n> seeds``: what ran, at a glance (the
    sources are the plan's labels: the strategies for a dataset, else e.g. ``torchvision``;
    a run submitted without a plan, from a deployment or the UI, names its source spec)."""
    raw = flow_run.parameters.get("params") or {}
    params = raw if isinstance(raw, PipelineParams) else PipelineParams(**raw)
    plan = flow_run.parameters.get("plan")
    if isinstance(plan, dict):
        plan = RunPlan.from_dict(plan)
    sources = ",".join(plan.labels) if plan else params.source.split("?")[0]
    target = params.target.split("?")[0].split(":")[-1].rstrip("/").rsplit("/", 1)[-1]
    k = getattr(params, "k_values", None) or params.k_shot
    return (
        f"{target} · k={k} · {sources} × {','.join(params.transfer_modes)} · {params.seeds} seeds"
    )


def _ender(status: str):
    def hook(flow, run, state) -> None:
        reason = f"flow run {state.type.value.lower()}: {state.message or state.name}"
        stage_runs.end_flow_runs(str(run.id), status, reason)

    return hook


END_HOOKS = dict(
    on_failure=[_ender("FAILED")],
    on_crashed=[_ender("KILLED")],
    on_cancellation=[_ender("KILLED")],
)

# What both flows share. Two threads more than the machine's training slots (the `gpu` tag
# limit, `warmstart status`): every slot busy while at most two tasks wait for one, so few tasks
# poll the server for a slot (each poll is server CPU taken from training). On a GPU machine
# with more slots, raise it with `.with_options(task_runner=...)` or Dask.
FLOW_OPTIONS = dict(
    flow_run_name=run_name,
    task_runner=ThreadPoolTaskRunner(max_workers=cpu_slots() + 2),
    log_prints=True,
    validate_parameters=True,
    **END_HOOKS,
)
