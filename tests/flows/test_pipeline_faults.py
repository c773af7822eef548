"""Through the CLI against the real services: bad input, unreachable services, a run killed during
training and resumed, S3 going down mid-run, and the gate refusing a noise source."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from warmstart import storage

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


def _checkpoint_objects() -> list[str]:
    return [k for k in storage.list_keys(storage.uri("checkpoints")) if "/ckpt/epoch-" in k]


def test_killed_during_training_resumes_from_checkpoint(stack):
    args = [*TINY, "--target", "builtin:uci-digits?classes=4-9", "--epochs", "40", "--json"]
    before = set(_checkpoint_objects())
    proc = subprocess.Popen(
        [*WARMSTART, "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
        start_new_session=True,
    )
    deadline = time.monotonic() + 420
    try:
        while time.monotonic() < deadline:
            new = [k for k in _checkpoint_objects() if k not in before and "/finetune-" in k]
            if new:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.5)
        else:
            pytest.fail("no fine-tuning checkpoint appeared in S3")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    out = cli("run", *args)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["resumed"] >= 1
    assert summary["verdict"] in ("promoted", "not promoted")


def test_s3_down_fails_clearly_then_rerun_completes(stack):
    from warmstart.infra import stack as stack_mod

    s3 = stack_mod.services(stack.config)[0]
    args = [*TINY, "--target", "builtin:uci-digits?classes=3-9", "--epochs", "3", "--json"]
    stack_mod.stop_pid(stack_mod.service_pid(s3))
    s3.pid_file.unlink(missing_ok=True)
    env = {**os.environ, "WARMSTART_IO_RETRY_SECONDS": "5"}  # the default rides out a minute
    try:
        out = cli("run", *args, timeout=600, env=env)
        line = _one_line_error(out)
        assert "S3" in line and ("warmstart up" in line or "AWS_ENDPOINT_URL" in line)
    finally:
        stack_mod.up(stack.config, echo=lambda s: None)
    out = cli("run", *args)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["verdict"] in (
        "promoted",
        "not promoted",
    )


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
