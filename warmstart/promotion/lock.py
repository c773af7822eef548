"""The promotion lock: a Prefect global concurrency limit per registered model.

Two pipeline runs that promote into the same registered model take turns: ``promote:<model>``
holds one slot, created on first use. Prefect leases the slot (renewed while held), so a
process that dies holding it frees it when the lease runs out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from warmstart.errors import ConfigError, TrackingError

LOCK_TIMEOUT_S = 900.0  # how long a promotion waits for another one to finish
LEASE_S = 120.0  # a dead holder's slot is freed this long after its last renewal


def lock_name(model_name: str) -> str:
    return f"promote:{model_name}"


def ensure_limit(name: str) -> None:
    """Create the one-slot global concurrency limit ``name`` unless it exists."""
    from prefect.client.orchestration import get_client  # deferred: heavy
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except ObjectAlreadyExists:
            pass


@contextmanager
def prefect_lock(model_name: str, *, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold ``promote:<model_name>`` (one slot) for the duration of the block.

    Needs a Prefect API (``PREFECT_API_URL``): without one every process would start its own
    temporary server and the lock would guard nothing.
    """
    import httpx
    from prefect.concurrency.sync import concurrency  # deferred: heavy
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        raise ConfigError(
            f"promoting {model_name} needs PREFECT_API_URL (the promotion lock lives on the "
            "Prefect server): run `warmstart up` and `eval $(warmstart env)`"
        )
    name = lock_name(model_name)
    with ExitStack() as stack:
        try:
            ensure_limit(name)
            stack.enter_context(
                concurrency(
                    name,
                    occupy=1,
                    timeout_seconds=timeout_s,
                    lease_duration=LEASE_S,
                    strict=True,
                    raise_on_lease_renewal_failure=False,
                )
            )
        except TimeoutError:
            raise TrackingError(
                f"another promotion of {model_name} held the lock {name} for more than "
                f"{timeout_s:.0f} s: check its flow run in the Prefect UI, then rerun"
            ) from None
        except httpx.HTTPError as exc:
            raise TrackingError(
                f"could not take the promotion lock {name} on the Prefect server "
                f"({type(exc).__name__}): check PREFECT_API_URL and `warmstart status`"
            ) from None
        yield
