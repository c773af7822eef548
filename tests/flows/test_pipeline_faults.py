"""Through the CLI against the real services: bad input, unreachable services, and the gate
refusing a noise source. (Runs killed or losing a service mid-training, and their reruns, are in
test_reliability.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.services, pytest.mark.slow]

WARMSTART = [sys.executable, "-m", "warmstart.cli"]
TINY = [
    "--source",
    "builtin:uci-digits?classes=0-4",
    "--target",
    "builtin:uci-digits?classes=5-9",
    "--k-shot",
    "5",
    "--strategies",
    "supervised",
    "--modes",
    "linear_probe",
    "--seeds",
    "1",
    "--pretrain-epochs",
    "2",
    "--confirm-seeds",
    "0",  # no confirmation training: these tests are about errors, not verdicts
]


def cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*WARMSTART, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or dict(os.environ),
    )


def _one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    err = out.stderr.strip()
    assert "Traceback" not in out.stderr
    return err.splitlines()[-1]


def test_unknown_strategy_lists_valid_names(stack):
    line = _one_line_error(cli("run", "--strategies", "supervised,diffusion"))
    assert "diffusion" in line and "supervised" in line and "autoencoder" in line


def test_unknown_mode_lists_valid_names(stack):
    line = _one_line_error(cli("run", "--modes", "warp"))
    assert "warp" in line and "lp_ft" in line


def test_k_too_large_is_a_clear_error(stack):
    out = cli("run", *TINY, "--k-shot", "5000", "--epochs", "1")
    line = _one_line_error(out)
    assert "5000" in line and "k" in line.lower()


def test_unreachable_service_is_named(stack):
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:9"
    line = _one_line_error(cli("run", *TINY, env=env))
    assert "MLflow" in line and "127.0.0.1:9" in line and "warmstart up" in line
    env = dict(os.environ)
    env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
    line = _one_line_error(cli("run", *TINY, env=env))
    assert "Prefect" in line and "PREFECT_API_URL" in line


def test_noise_source_is_not_promoted(stack):
    """Negative control: pretraining on random images with random labels must not pass the gate."""
    args = [
        "--source",
        "builtin:noise?n=600&num_classes=5",
        "--target",
        "builtin:uci-digits?classes=0-4",
        "--k-shot",
        "5",
        "--strategies",
        "supervised",
        "--modes",
        "linear_probe",
        "--seeds",
        "2",
        "--pretrain-epochs",
        "2",
        "--epochs",
        "6",
        "--json",
    ]
    out = cli(*["run", *args])
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    row = next(r for r in summary["table"] if r["arm"] == "supervised/linear_probe")
    assert summary["verdict"] == "not promoted", summary["reason"]
    assert row["delta_ci"][0] <= 0.0


def test_sweep_bad_k_values_is_one_line(stack):
    line = _one_line_error(cli("sweep", "--k-values", "1,x"))
    assert "--k-values" in line and "1,x" in line
    line = _one_line_error(cli("sweep", "--k-values", "0,5"))
    assert "k_values" in line
