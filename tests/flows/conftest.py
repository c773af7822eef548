"""Pipeline runs shared by the flow tests (each full run costs about a minute here)."""

from __future__ import annotations

import time

import pytest

from tests.flows import configs
from warmstart.params import PipelineParams


@pytest.fixture(scope="session")
def tiny_run(stack) -> dict:
    """The TINY configuration once per session, registering its served model whatever the
    verdict (keep_candidates): its summary, parameters and wall time."""
    from warmstart.flows.pipeline import transfer_pipeline  # deferred: heavy (prefect, torch)

    params = PipelineParams(**configs.TINY, keep_candidates=True)
    t0 = time.monotonic()
    summary = transfer_pipeline(params)
    return {"summary": summary, "params": params, "seconds": time.monotonic() - t0}
