"""Run the transfer pipeline's training fan-out on a Dask cluster through prefect-dask.

The flow itself is unchanged (``flows.pipeline.transfer_pipeline``); only its task runner is
swapped, so every ``.submit`` (pretraining, fine-tuning, scratch, controls) runs on a Dask worker
while the flow process keeps the cheap steps (ingest, splits, evaluation, registration).

Workers must reach the same services as the flow: a temporary local cluster gets the client
variables (``FORWARDED``) explicitly; an existing cluster (``address=``) is checked first and
refused, naming the variable, when its workers point elsewhere. Dask sets ``OMP_NUM_THREADS=1``
in its worker processes, so torch trains with one thread per worker: ``n_workers`` × 1 threads
should not exceed the cores.
"""

from __future__ import annotations

import os

from prefect_dask import DaskTaskRunner

from warmstart.contracts import RunPlan
from warmstart.errors import ConfigError
from warmstart.flows.pipeline import transfer_pipeline
from warmstart.params import PipelineParams

# What a worker needs to find the services (warmstart/settings.py, docs/CONVENTIONS.md).
FORWARDED = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REQUEST_CHECKSUM_CALCULATION",
    "AWS_RESPONSE_CHECKSUM_VALIDATION",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_DISABLE_TELEMETRY",
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "WARMSTART_IO_RETRY_SECONDS",
    "PREFECT_HOME",
    "WARMSTART_BUCKET",
    "WARMSTART_HOME",
)
# Must be equal on the workers and here, or results land in another store.
MUST_MATCH = (
    "AWS_ENDPOINT_URL",
    "MLFLOW_TRACKING_URI",
    "PREFECT_API_URL",
    "WARMSTART_BUCKET",
)


def worker_env() -> dict[str, str | None]:
    """The service variables of the process it runs in (executed on each worker)."""
    return {key: os.environ.get(key) for key in MUST_MATCH}


def check_worker_env(address: str, *, timeout: float = 30.0) -> int:
    """Raise ConfigError if a worker of the cluster at ``address`` sees other services than this
    process; returns the number of workers checked."""
    from distributed import Client

    here = worker_env()
    try:
        with Client(address, timeout=timeout, set_as_default=False) as client:
            seen = client.run(worker_env)
    except OSError as exc:
        raise ConfigError(
            f"Dask scheduler {address} unreachable ({type(exc).__name__}): start it or fix the address"
        ) from None
    if not seen:
        raise ConfigError(f"Dask cluster {address} has no workers: start some with `dask worker`")
    for worker, env in seen.items():
        for key in MUST_MATCH:
            if env.get(key) != here[key]:
                raise ConfigError(
                    f"Dask worker {worker} has {key}={env.get(key)!r}, this process "
                    f"{here[key]!r}: start the workers with the same environment "
                    "(eval $(warmstart env)) so they reach the same services"
                )
    return len(seen)


def dask_task_runner(
    *, address: str | None = None, n_workers: int = 2, threads_per_worker: int = 1
) -> DaskTaskRunner:
    """A runner on an existing cluster (``address``) or on a temporary local process cluster."""
    if address:
        return DaskTaskRunner(address=address)
    if n_workers < 1 or threads_per_worker < 1:
        raise ConfigError(
            f"n_workers={n_workers}, threads_per_worker={threads_per_worker}: use at least 1 each"
        )
    env = {key: os.environ[key] for key in FORWARDED if key in os.environ}
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": n_workers,
            "threads_per_worker": threads_per_worker,
            "processes": True,
            "host": "127.0.0.1",
            # The scheduler always serves HTTP (health, metrics); None would mean :8787 on all
            # interfaces. A free loopback port instead; the Bokeh UI appears only if installed.
            "dashboard_address": "127.0.0.1:0",
            "env": env,  # Nanny sets these in each worker process before it starts
        }
    )


def run_on_dask(
    params: PipelineParams,
    plan: RunPlan | None = None,
    *,
    address: str | None = None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
) -> dict:
    """Run ``transfer_pipeline(params, plan)`` with its training tasks on Dask; returns its
    summary."""
    if address:
        check_worker_env(address)
    runner = dask_task_runner(
        address=address, n_workers=n_workers, threads_per_worker=threads_per_worker
    )
    return transfer_pipeline.with_options(task_runner=runner)(params, plan)
