"""The CLI plans a run once, shows that plan (``--dry-run``) and refuses bad input from it before
any service is asked or any flow run created: a sweep is planned whole, every k (no services)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from warmstart.cli import pipeline_cmds
from warmstart.cli.app import app
from warmstart.contracts import RunPlan
from warmstart.params import PipelineParams
from warmstart.stages import make_plan


@pytest.fixture
def no_services(monkeypatch):
    """Fail the test if the CLI gets as far as the services (the step before any flow run)."""

    def reached():
        raise AssertionError("the CLI went on to the services")

    monkeypatch.setattr(pipeline_cmds, "check_services", reached)


def test_a_sweep_k_too_large_is_refused_before_any_flow_run(no_services):
    args = ["sweep", "--k-values", "1,500", "--strategies", "supervised", "--modes", "finetune"]
    out = CliRunner().invoke(app, [*args, "--seeds", "1"])
    assert out.exit_code == 2, out.output
    assert "--k-values 500 is larger than the training pool of class" in out.output
    assert "use --k-values 113 or less" in out.output


def test_dry_run_prints_the_plan_the_flow_receives(no_services):
    out = CliRunner().invoke(app, ["run", "--k-shot", "5", "--seeds", "1", "--dry-run"])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.output)
    plan = make_plan(PipelineParams(k_shot=5, seeds=1))
    assert RunPlan.from_dict(printed) == plan
    assert printed["k_values"] == [5] and printed["sources"][0]["provider"] == "pretrain"
