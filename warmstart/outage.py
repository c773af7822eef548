"""One retry budget per outage, not per call.

A run makes many calls in series to the same service (a metric, then the stage's end, then a task
retry, then the failure hook's search). If each of them retried for the whole window, an outage
would surface only after several windows. Instead, the first call that finds a service down
starts its outage clock here, and every later call to that service, in any thread, retries only
for what is left of ``WARMSTART_IO_RETRY_SECONDS`` counted from that moment; once it is spent,
a call is tried once and fails at once, and task-level retries are skipped. The first call that
succeeds ends the outage. A failure after a quiet spell longer than the window starts a new one.

Standard library only: ``storage`` (S3) and ``tracking`` (MLflow) each keep one ``Outage``.
"""

from __future__ import annotations

import threading
import time


class Outage:
    """When a service's current outage began (None: no known outage)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._since: float | None = None
        self._last = 0.0
        self._lock = threading.Lock()

    def failed(self, started: float, window: float) -> float:
        """Record a failure of a call that started at ``started`` (``time.monotonic()``);
        returns when the outage began."""
        now = time.monotonic()
        with self._lock:
            if self._since is None or now - self._last > max(window, 1.0):
                self._since = started
            self._last = now
            return self._since

    def ended(self) -> None:
        """A call succeeded: the service is back."""
        if self._since is not None:
            with self._lock:
                self._since = None

    def since(self) -> float | None:
        return self._since

    def waited(self) -> float:
        """Seconds since the outage began (0 when none is known)."""
        since = self._since
        return 0.0 if since is None else time.monotonic() - since

    def left(self, window: float) -> float:
        """Seconds of the retry budget still left (the whole window when no outage is known)."""
        return window - self.waited()

    def spent(self, window: float) -> bool:
        return self._since is not None and self.waited() >= window


S3 = Outage("S3")
MLFLOW = Outage("MLflow")


def spent(window: float) -> list[str]:
    """The services whose current outage has used up the retry budget ``window``."""
    return [o.service for o in (S3, MLFLOW) if o.spent(window)]
