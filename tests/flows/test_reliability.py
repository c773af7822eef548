"""Every run ends, and the first real error is what the user reads — through the CLI against the
real services: S3 or MLflow stopped in the middle of training (then a rerun completes).
(SIGTERM and kill -9 are in test_interrupts.py: two files, so parallel test workers share the
load.)"""

from __future__ import annotations

import pytest

from tests.flows.cli_runs import rerun, stopped_mid_run, tiny

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_s3_stopped_mid_run_names_s3_and_the_fix_then_a_rerun_completes(stack):
    line = stopped_mid_run(stack, "s3", "3-6")
    assert "S3" in line and "warmstart up" in line, line
    assert "UnfinishedRun" not in line and "PENDING" not in line
    rerun(tiny("3-6"))  # nothing half-written stands in the way once S3 is back


def test_mlflow_stopped_mid_run_names_mlflow_and_the_fix(stack):
    line = stopped_mid_run(stack, "mlflow", "4-7")
    assert "MLflow" in line and ("warmstart status" in line or "warmstart up" in line), line
    assert "UnfinishedRun" not in line
