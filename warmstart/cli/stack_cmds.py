"""Commands for the local stack: up, down, status, deploy, env."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer
from rich.table import Table

from warmstart.cli.app import app, console, friendly
from warmstart.errors import StackError, WarmstartError
from warmstart.infra import deploy as deploy_mod
from warmstart.infra import services, stack
from warmstart.settings import (
    SECRET_VARIABLES,
    env_file,
    load_env,
    read_env_file,
    redact,
    unclosed_runs_file,
)


@app.command()
@friendly
def up() -> None:
    """Start the local stack (SeaweedFS S3, MLflow, Prefect) or reuse what is running."""
    cfg = stack.StackConfig.from_env()
    t0 = time.monotonic()
    stack.up(cfg, echo=lambda s: console.print(s, highlight=False))
    console.print(f"stack ready in {time.monotonic() - t0:.1f} s")
    console.print(f"  Prefect UI  {cfg.prefect_url}")
    console.print(f"  MLflow UI   {cfg.mlflow_url}")
    console.print(f"  S3 store    {cfg.s3_url}  (bucket {cfg.bucket})")
    console.print(f"  clients:    eval $(warmstart env)   # reads {cfg.home / 'env'}")
    close_recorded_runs()


def close_recorded_runs() -> None:
    """End the MLflow runs an outage left open (recorded on local disk), now that MLflow is up."""
    if not unclosed_runs_file().exists():
        return
    from warmstart.tracking import close_recorded_runs as close  # deferred: mlflow, torch

    load_env()  # a first `up` wrote the env file only now
    try:
        closed = close()
    except WarmstartError as exc:
        console.print(f"runs left open by an MLflow outage stay recorded: {redact(str(exc))}")
        return
    if closed:
        console.print(f"ended {len(closed)} MLflow run(s) left open by an outage: {closed}")


@app.command()
@friendly
def down() -> None:
    """Stop the processes `warmstart up` started. All data is kept."""
    stack.down(echo=lambda s: console.print(s, highlight=False))


@app.command()
@friendly
def status() -> None:
    """Each service: URL, pid, health. Exit code 1 if any is not healthy."""
    rows = stack.status()
    table = Table("service", "url", "pid", "health", "note")
    for row in rows:
        health = "[green]healthy[/]" if row.healthy else "[red]down[/]"
        table.add_row(row.name, row.url, str(row.pid or "-"), health, row.note)
    console.print(table)
    console.print(slots_line(), highlight=False)
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


def slots_line() -> str:
    """How training stages share this machine (the Prefect `gpu` tag limit's slots)."""
    kind, slots, threads = services.slot_plan()
    if kind == "gpu":
        return (
            f"training slots: {slots} (the `gpu` tag limit): {services.visible_gpus()} GPU(s) "
            f"x {slots // max(1, services.visible_gpus())} stage(s) each (WARMSTART_SLOTS_PER_GPU)"
        )
    return (
        f"training slots: {slots} (the `gpu` tag limit) on {services.cores()} CPU cores, "
        f"{slots} stage(s) at once x {threads} thread(s) each (WARMSTART_CPU_SLOTS overrides)"
    )


@app.command()
@friendly
def deploy() -> None:
    """Register deploy/prefect.yaml's deployments and start a process worker (stopped by `down`)."""
    cfg = stack.StackConfig.from_env()
    names, pid = deploy_mod.deploy(cfg)
    console.print(f"deployments: {', '.join(names)}; worker pid {pid} on pool {deploy_mod.POOL}")
    console.print(
        "  run one: prefect deployment run 'transfer-pipeline/nightly' -p params='{\"k_shot\": 5}'"
    )
    console.print(f"  or from the UI: {cfg.prefect_url}/deployments")


@app.command()
@friendly
def env(
    show_secrets: Annotated[
        bool,
        typer.Option(
            "--show-secrets/--hide-secrets",
            help="Print the keys and passwords (the default, for `eval $(warmstart env)`), or "
            "mask them with *** to show the file safely.",
        ),
    ] = True,
) -> None:
    """Print the client variables for `eval $(warmstart env)` (contains credentials)."""
    values = read_env_file()
    if not values:
        raise StackError(f"no {env_file()} yet: run `warmstart up` first")
    for key, value in values.items():
        if not show_secrets and key in SECRET_VARIABLES:
            value = "***"
        sys.stdout.write(f"export {key}={value}\n")
