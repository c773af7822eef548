"""Helpers for the tests that run the CLI against the real services and interrupt it: start a
run, wait until it trains, stop a service or signal it, and read what it left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from mlflow.tracking import MlflowClient

from warmstart import storage
from warmstart.infra import stack as stack_mod

WARMSTART = [sys.executable, "-m", "warmstart.cli"]


def tiny(target_classes: str, epochs: int = 40) -> list[str]:
    """A run whose fine-tuning lasts long enough to be interrupted (many cheap epochs)."""
    return [
        "run",
        "--source", "builtin:uci-digits?classes=0-2",
        "--target", f"builtin:uci-digits?classes={target_classes}",
        "--k-shot", "5", "--strategies", "supervised", "--modes", "finetune",
        "--seeds", "1", "--pretrain-epochs", "2", "--epochs", str(epochs), "--json",
        "--confirm-seeds", "0",  # no confirmation training: these tests are about ending runs
    ]  # fmt: skip


def cli_env(**env: str) -> dict[str, str]:
    """This process's environment for a CLI run, plus ``env`` (the MLflow HTTP settings this
    process's client wrote are marked as its own, so the child recomputes them from its own
    WARMSTART_IO_RETRY_SECONDS)."""
    return {**os.environ, **env}


def start(args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*WARMSTART, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(**env),
        start_new_session=True,
    )


MARGIN = 10  # epochs a stage must still have to go (of tiny()'s 40) for wait_for_training


def wait_for_training(proc: subprocess.Popen, before: set[str], timeout: float = 420) -> None:
    """Until a fine-tuning stage of this run is under way: a complete epoch checkpoint in S3
    (its ``meta.json``, which goes up after the epoch's files), no ``result.json`` yet, and at
    least ``MARGIN`` epochs still to go, so the stage is still training when the caller acts.
    A finished stage's checkpoint does not count: the random-init control trains one epoch and
    finishes before the arms' first epoch, and a kill then leaves nothing to resume."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(epochs_left >= MARGIN for epochs_left in unfinished(before).values()):
            return
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.5)
    pytest.fail("no fine-tuning stage was seen training in S3")


def unfinished(before: set[str]) -> dict[str, int]:
    """Fine-tuning stages new since ``before`` with a complete epoch checkpoint and no result:
    their prefix and the epochs they had left at that checkpoint (what a rerun resumes)."""
    keys = checkpoints() - before
    out = {}
    for key in keys:
        prefix = key.removesuffix("/ckpt/meta.json")
        if prefix == key or "/finetune-" not in key or f"{prefix}/result.json" in keys:
            continue
        meta = json.loads(storage.get_bytes(storage.uri(key)))
        out[prefix] = int(meta["epochs_total"]) - int(meta["epoch"])
    return out


def checkpoints() -> set[str]:
    return set(storage.list_keys(storage.uri("checkpoints")))


def runs_of(experiment: str) -> list:
    c = MlflowClient()
    exp = c.get_experiment_by_name(f"warmstart/{experiment}")
    assert exp is not None, f"no experiment warmstart/{experiment}"
    return c.search_runs([exp.experiment_id], max_results=500)


def flow_runs(stack, state: str, exclude: set[str] = frozenset()) -> list[dict]:
    """Flow runs in ``state``, leaving out those in ``exclude`` (ids from before the test: the
    session's stack is shared with other tests that kill runs too)."""
    body = {"flow_runs": {"state": {"type": {"any_": [state]}}}}
    api = stack.env["PREFECT_API_URL"]
    runs = httpx.post(f"{api}/flow_runs/filter", json=body, auth=stack.prefect_auth).json()
    return [r for r in runs if r["id"] not in exclude]


def all_flow_run_ids(stack) -> set[str]:
    api = stack.env["PREFECT_API_URL"]
    runs = httpx.post(f"{api}/flow_runs/filter", json={}, auth=stack.prefect_auth).json()
    return {r["id"] for r in runs}


def stop(svc) -> None:
    """Stop one of the stack's services (``stack_mod.up`` starts it again)."""
    stack_mod.stop_pid(stack_mod.service_pid(svc))
    svc.pid_file.unlink(missing_ok=True)


def last_line(proc: subprocess.Popen, timeout: float) -> str:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"the run did not end within {timeout} s:\n{err[-6000:]}")
    assert proc.returncode == 2, (proc.returncode, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    return err.strip().splitlines()[-1]


def stopped_mid_run(
    stack, service: str, target_classes: str, window: float = 5
) -> tuple[str, float]:
    """Stop ``service`` once a run is training (the run's retry budget: ``window`` s): the
    run's last stderr line and the seconds from the stop to the CLI's exit (then restart it)."""
    svc = next(s for s in stack_mod.services(stack.config) if s.name == service)
    before = checkpoints()
    proc = start(tiny(target_classes), WARMSTART_IO_RETRY_SECONDS=str(window))
    try:
        wait_for_training(proc, before)
        stop(svc)
        stopped = time.monotonic()
        line = last_line(proc, timeout=420)
        return line, time.monotonic() - stopped
    finally:
        proc.kill()
        stack_mod.up(stack.config, echo=lambda s: None)


def stack_env(stack) -> dict[str, str]:
    """The variables that make ``warmstart up`` address the test's private stack."""
    cfg = stack.config
    ports = cfg.weed_ports | {
        "WARMSTART_MLFLOW_PORT": cfg.mlflow_port,
        "WARMSTART_PREFECT_PORT": cfg.prefect_port,
    }
    home = {"WARMSTART_HOME": str(cfg.home), "WARMSTART_BUCKET": cfg.bucket}
    return {**home, **{k: str(v) for k, v in ports.items()}}


def rerun(args: list[str], **env: str) -> dict:
    """The same run again, to the end: its JSON summary."""
    out = subprocess.run(
        [*WARMSTART, *args], capture_output=True, text=True, timeout=600, env=cli_env(**env)
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert "--confirm-seeds" in args and args[args.index("--confirm-seeds") + 1] == "0"
    # no confirmation seeds: the gate cannot promote, whatever the numbers
    assert (summary["verdict"], summary["rule"]) == ("not promoted", "unconfirmed")
    return summary
