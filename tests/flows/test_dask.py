"""The local Dask runner's settings (no services). That a Dask run gives the default runner's
numbers, against the real services, is tested in test_pipeline.py beside the TINY run it
compares with (one file: one worker process runs the TINY run once for both)."""

from __future__ import annotations

import pytest

from warmstart.errors import ConfigError
from warmstart.flows import dask_runner


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
