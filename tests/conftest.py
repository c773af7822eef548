"""Shared fixtures. `stack` starts the real local services (SeaweedFS, MLflow, Prefect) once per
test session, on free ports in a temporary state folder, and stops them at the end. Every service
asks for credentials: os.environ gets them (MLFLOW_TRACKING_USERNAME/PASSWORD,
PREFECT_API_AUTH_STRING, the S3 keys), and raw HTTP calls pass ``auth=stack.prefect_auth`` or
``auth=stack.mlflow_auth``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from warmstart import outage
from warmstart.infra import ports

# The files that take longest (each runs whole flows through the services), heaviest first, from
# `make test`'s --durations on 2 cores. `make test` runs pytest-xdist with `--dist loadfile
# --no-loadscope-reorder`, which hands out files in collection order: these start first, and the
# many short files fill the workers' gaps at the end. (xdist's default order, most tests first,
# sends these one-to-three-test files last, and one worker finishes minutes after the others.)
HEAVIEST_FIRST = (
    "tests/flows/test_pipeline_promoted.py",
    "tests/flows/test_interrupts.py",
    "tests/flows/test_reliability.py",
    "tests/e2e/test_browser.py",
    "tests/flows/test_pipeline.py",
    "tests/flows/test_torchvision_source.py",
    "tests/flows/test_sources_registered.py",
    "tests/flows/test_ranking.py",
    "tests/flows/test_label_efficiency.py",
    "tests/flows/test_pipeline_faults.py",
    "tests/flows/test_plugins.py",
    "tests/flows/test_imbalanced.py",
    # the longest files without services (1-2 min each: a false-positive rate measured on
    # 2,000 images; an MLflow server per test)
    "tests/unit/test_leakage.py",
    "tests/k8s/test_mlflow_users.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """HEAVIEST_FIRST's files first, in that order; every other file after them, as collected
    (a stable sort: each file's tests stay together and in order)."""
    rank = {path: i for i, path in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def _port_range() -> range:
    """20000-29999, split between pytest-xdist workers (gw0, gw1, …) so that two workers starting
    their stacks at the same moment never pick the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    index = int(worker.removeprefix("gw") or 0) % count
    width = 10000 // count
    return range(20000 + index * width, 20000 + (index + 1) * width - 1)


def free_ports(n: int, *, grpc: bool = False) -> list[int]:
    """n free ports in this worker's share of 20000-29999 (and port+10000 free too when
    `grpc`)."""
    return ports.free_ports(n, span=_port_range(), grpc=grpc)


@dataclass
class RunningStack:
    config: object  # infra.stack.StackConfig
    env: dict[str, str]
    home: Path
    prefect_auth: tuple[str, str]  # httpx auth for the Prefect API (its PREFECT_API_AUTH_STRING)
    mlflow_auth: tuple[str, str]  # httpx auth for the MLflow server (basic auth)


def stack_config(home: Path):
    from warmstart.infra.stack import StackConfig

    s3, master, volume, filer, admin = free_ports(5, grpc=True)
    mlflow_port, prefect_port = free_ports(2)
    return StackConfig(
        home=home,
        bucket="warmstart-test",
        s3_port=s3,
        master_port=master,
        volume_port=volume,
        filer_port=filer,
        admin_port=admin,
        mlflow_port=mlflow_port,
        prefect_port=prefect_port,
        start_timeout=180,
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> RunningStack:
    """The real services, started for this test session; os.environ points every client at them."""
    from warmstart.infra import stack as stack_mod
    from warmstart.infra.credentials import mlflow_auth, prefect_auth

    home = tmp_path_factory.mktemp("warmstart-home")
    cfg = stack_config(home)
    saved = dict(os.environ)
    stack_mod.up(cfg, echo=lambda s: None)
    env = stack_mod.client_env(cfg)
    os.environ.update(env)
    os.environ["WARMSTART_HOME"] = str(home)
    os.environ["PREFECT_HOME"] = str(home / "prefect-client")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # Prefect snapshots its settings when first imported: point the live context at this server.
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_URL,
        PREFECT_HOME,
        temporary_settings,
    )

    updates = {
        PREFECT_API_URL: env["PREFECT_API_URL"],
        PREFECT_API_AUTH_STRING: env["PREFECT_API_AUTH_STRING"],
        PREFECT_HOME: home / "prefect-client",
    }
    try:
        with temporary_settings(updates=updates):
            yield RunningStack(cfg, env, home, prefect_auth(cfg), mlflow_auth(cfg))
    finally:
        # Send Prefect's buffered API logs while the server is still up (else a noisy
        # "Error logging to API" at exit).
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)
        stack_mod.down(cfg, echo=lambda s: None)
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _no_outage_carried_over():
    """Each test starts with no known S3 or MLflow outage: the retry budget is one per outage,
    kept per process (``warmstart.outage``), and a test that stopped a service must not spend
    the next test's."""
    outage.S3.ended()
    outage.MLFLOW.ended()
