"""The pipeline's training fan-out on a local 2-worker Dask cluster (prefect-dask) gives the same
numbers as the default thread-pool runner, against the real services.

The default-runner run is the session's TINY run (tests/flows/conftest.py). The Dask run trains
from nothing: it gets its own bucket (the pipeline caches finished stages in S3 by their inputs)
and its own WARMSTART_HOME (the local checkpoint mirror would otherwise let it resume at the last
epoch). Its registration is off, so the session run's model cannot be its champion; the numbers
(accuracies, deltas) do not depend on registration.
"""

from __future__ import annotations

import uuid

import pytest

from tests.flows import configs
from warmstart.errors import ConfigError
from warmstart.flows import dask_runner

TINY = dict(**configs.TINY, register_model=False)


def test_local_runner_forwards_the_service_variables(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    monkeypatch.setenv("WARMSTART_BUCKET", "b-1")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    runner = dask_runner.dask_task_runner(n_workers=3)
    kw = runner.cluster_kwargs
    assert kw["n_workers"] == 3 and kw["threads_per_worker"] == 1 and kw["processes"] is True
    assert kw["host"] == "127.0.0.1" and kw["dashboard_address"].startswith("127.0.0.1:")
    assert kw["env"]["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5999"
    assert kw["env"]["WARMSTART_BUCKET"] == "b-1"
    assert "AWS_SESSION_TOKEN" not in kw["env"]
    assert dask_runner.dask_task_runner(address="tcp://127.0.0.1:8786").address == (
        "tcp://127.0.0.1:8786"
    )
    with pytest.raises(ConfigError, match="n_workers=0"):
        dask_runner.dask_task_runner(n_workers=0)


def _fresh_store(monkeypatch, tmp_path, tag: str) -> str:
    from warmstart import storage

    bucket = f"warmstart-{tag}-{uuid.uuid4().hex[:6]}"
    storage.ensure_bucket(bucket)
    monkeypatch.setenv("WARMSTART_BUCKET", bucket)
    monkeypatch.setenv("WARMSTART_HOME", str(tmp_path / tag))
    return bucket


def _numbers(summary: dict) -> dict:
    return {
        row["arm"]: (row["test_acc"], row["val_acc"], row["delta_vs_scratch"])
        for row in summary["table"]
    }


@pytest.mark.services
@pytest.mark.slow
def test_dask_cluster_checks_worker_env_and_matches_the_default_runner(
    stack, tiny_run, monkeypatch, tmp_path
):
    import time

    from distributed import LocalCluster

    from warmstart.params import PipelineParams

    params = PipelineParams(**TINY)
    threads, t_threads = tiny_run["summary"], tiny_run["seconds"]

    bucket = _fresh_store(monkeypatch, tmp_path, "dask")
    t0 = time.monotonic()
    on_dask = dask_runner.run_on_dask(params, n_workers=2)
    t_dask = time.monotonic() - t0
    print(f"default runner {t_threads:.1f} s, local Dask (2 workers × 1 thread) {t_dask:.1f} s")

    assert on_dask["trained"] > 0 and on_dask["reused"] == 0 and on_dask["resumed"] == 0
    # the Dask run really wrote its stages into its own bucket
    from warmstart import storage

    assert any(
        k.endswith("result.json")
        for k in storage.list_keys(storage.uri("checkpoints/", bucket=bucket))
    )
    assert _numbers(on_dask) == _numbers(threads)
    assert on_dask["verdict"] == threads["verdict"]

    # an existing cluster whose workers see another bucket is refused before any work
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        assert dask_runner.check_worker_env(cluster.scheduler_address) == 1
        monkeypatch.setenv("WARMSTART_BUCKET", "somewhere-else")  # the workers keep theirs
        with pytest.raises(ConfigError, match="WARMSTART_BUCKET"):
            dask_runner.run_on_dask(params, address=cluster.scheduler_address)
