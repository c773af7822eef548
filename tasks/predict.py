"""Prefect tasks of batch prediction: thin wrappers over ``warmstart.predict`` (the same
functions `warmstart predict` calls in one go), so the UI shows where a run failed and only the
I/O is retried."""

from __future__ import annotations

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from warmstart import outage, storage, tracking
from warmstart import predict as core
from warmstart.errors import StorageError, TrackingError

IO_RETRIES = dict(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2))


def _io_only(task, task_run, state) -> bool:
    """Retry when storage or tracking failed; a refused image, a model that does not exist or
    cannot run here fails at once."""
    try:
        state.result()
    except (tracking.NotFound, tracking.UnusableModel):
        return False
    except (StorageError, TrackingError):
        return not outage.spent(storage.retry_window())  # a spent budget: no more retries
    except Exception:  # noqa: BLE001
        return False
    return False


@task(name="resolve-model", cache_policy=NO_CACHE, retry_condition_fn=_io_only, **IO_RETRIES)
def resolve_model(model_uri: str) -> core.ServedModel:
    return core.resolve_model(model_uri)


@task(name="load-images", cache_policy=NO_CACHE, retry_condition_fn=_io_only, **IO_RETRIES)
def load_images(images: str, served: core.ServedModel) -> core.ImageBatch:
    return core.load_images(images, channels=served.channels, size=served.size)


@task(name="run-model", cache_policy=NO_CACHE, tags=["gpu"])
def run_model(served: core.ServedModel, batch: core.ImageBatch) -> np.ndarray:
    return core.run_model(served, batch.images)


@task(name="write-predictions", cache_policy=NO_CACHE, retry_condition_fn=_io_only, **IO_RETRIES)
def write_predictions(
    served: core.ServedModel, batch: core.ImageBatch, probs: np.ndarray, out: str, top_k: int = 1
) -> dict:
    """The predictions, and the accuracy and confusion matrix when the folder is labelled."""
    return core.write_all(served, batch, probs, out, top_k)
