"""The README's automation (section "Automations") against the real Prefect server: the
deployment and its trigger exactly as the README writes them, turned into an automation the way
`prefect deploy` does (`DeploymentEventTrigger` → `as_automation()`), then verdict events as
`tasks/events.py` shapes them. A promotion of the matching model creates a flow run of the
batch-prediction deployment with the event's model URI; a refusal, or another target's
promotion, creates none."""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import SimpleNamespace
from uuid import UUID

import pytest
import yaml

README = Path(__file__).resolve().parents[2] / "README.md"
MODEL = "warmstart-uci-digits-8x8-1ch-d324d0"  # the README's example name of a uci-digits model
OTHER = "warmstart-mnist-5k-28x28-1ch-0a1b2c"  # another target's model


def readme_deployment() -> dict:
    """The one YAML block of the README's "Automations" section: one deployment entry."""
    body = README.read_text().split("\n### Automations\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```yaml\n(.*?)```", body, flags=re.S)
    (deployment,) = yaml.safe_load(block)
    return deployment


def verdict(model: str, version: str | None, promoted: bool) -> dict:
    """The event `tasks.events.verdict_event` makes for such a verdict (the production code)."""
    from warmstart.tasks.events import verdict_event

    d = {"mean_diff": 0.05, "ci_low": 0.01, "ci_high": 0.09}
    decision = SimpleNamespace(
        passed=promoted,
        verdict="promoted" if promoted else "not promoted",
        rule="promoted" if promoted else "below-margin",
        reason="r",
        candidate="supervised/linear_probe",
        delta_vs_scratch=d,
        margin=0.0,
    )
    outcome = SimpleNamespace(version=version, champion_version=version if promoted else "1")
    job = SimpleNamespace(
        target=SimpleNamespace(name="uci-digits"),
        split=SimpleNamespace(k_shot=5),
        run=SimpleNamespace(flow_run_id="f"),
    )
    return verdict_event(decision, outcome if version else None, model, job)


def _deploy(client, spec: dict) -> UUID:
    """What `prefect deploy` registers for the README's entry: the deployment, then its trigger
    as an automation owned by it."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.events import DeploymentEventTrigger

    pool = spec["work_pool"]
    client.create_work_pool(WorkPoolCreate(name=pool["name"], type="process"), overwrite=True)
    flow_id = client.create_flow_from_name("batch-predict")
    deployment_id = client.create_deployment(
        flow_id,
        spec["name"],
        entrypoint=spec["entrypoint"],
        parameters=spec["parameters"],
        work_pool_name=pool["name"],
        work_queue_name=pool["work_queue_name"],
    )
    (trigger,) = spec["triggers"]
    trigger = DeploymentEventTrigger(**trigger, name=f"{spec['name']}__automation_1")
    trigger.set_deployment_id(deployment_id)
    client.create_automation(trigger.as_automation())
    return deployment_id


def _runs(client, deployment_id: UUID) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    ids = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    return client.read_flow_runs(deployment_filter=ids)


def _emit_until_run(client, deployment_id: UUID, versions, seen: int) -> tuple[list, list[str]]:
    """Emit promotions of MODEL (one new version every 3 s) until the deployment has more than
    ``seen`` flow runs; the runs and the model URIs emitted."""
    from prefect.events import emit_event

    uris: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        event = verdict(MODEL, str(next(versions)), promoted=True)
        emit_event(**event)
        uris.append(event["payload"]["model_uri"])
        for _ in range(6):
            time.sleep(0.5)
            runs = _runs(client, deployment_id)
            if len(runs) > seen:
                return runs, uris
    raise AssertionError(f"no flow run of the deployment within 120 s of {uris}")


@pytest.mark.services
@pytest.mark.slow
def test_readme_automation_runs_batch_prediction_when_a_champion_changes(stack):
    from itertools import count

    from prefect import get_client
    from prefect.events import emit_event

    spec = readme_deployment()
    assert spec["entrypoint"] == "flows/predict.py:batch_predict"
    (trigger,) = spec["triggers"]
    assert trigger["expect"] == ["warmstart.model.promoted"]
    versions = count(2)
    with get_client(sync_client=True) as client:
        deployment_id = _deploy(client, spec)
        assert _runs(client, deployment_id) == []
        # the automation is live once a promotion has created a run
        runs, promoted = _emit_until_run(client, deployment_id, versions, seen=0)
        # then: a refusal of MODEL and a promotion of another target's model, and one more
        # promotion of MODEL, whose run proves the two before it were read
        ignored = [verdict(MODEL, None, promoted=False), verdict(OTHER, "7", promoted=True)]
        assert ignored[0]["resource"]["prefect.resource.id"] == f"warmstart.model.{MODEL}.none"
        for event in ignored:
            emit_event(**event)
        time.sleep(2)
        runs, last = _emit_until_run(client, deployment_id, versions, seen=len(runs))
    got = [r.parameters.get("model_uri") for r in runs]
    assert last[-1] in got
    assert set(got) <= set(promoted + last), got  # promotions of MODEL only
    assert f"models:/{OTHER}/7" not in got
    for run in runs:
        # created by the automation and waiting for (or already taken by) the pool's worker:
        # Scheduled, or Pending once a worker is submitting it; never failed or crashed
        assert run.state.is_scheduled() or run.state.is_pending(), run.state
        # the deployment's own parameters, with the event's model URI added
        assert {k: run.parameters[k] for k in spec["parameters"]} == spec["parameters"]
