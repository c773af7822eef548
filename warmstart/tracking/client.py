"""The MLflow client setup and its error mapping: the one place both are defined.

Settings (an exported value always wins; set in ``os.environ`` before the first MLflow request,
because MLflow reads them from there on every request):

- one HTTP timeout: ``MLFLOW_HTTP_REQUEST_TIMEOUT`` = ``HTTP_TIMEOUT_S`` (60 s per socket
  operation, long enough for a proxied model upload);
- retries that outlast a server restart: MLflow retries every request it makes (tracking,
  registry, proxied artifact uploads and downloads, model loading) through urllib3's ``Retry``
  on connection errors and on 408/429/500/502/503/504, never on other 4xx answers. Its sleep
  before retry *n* is ``backoff_factor * 2**(n-1)`` s (none before the first) plus up to
  ``backoff_jitter`` s at random (each sleep capped at 120 s), so with factor 1 the retries
  together wait ``2**n - 2`` s.
  ``retry_settings`` picks the retries whose wait is closest to ``WARMSTART_IO_RETRY_SECONDS``
  (default 60: 6 retries, 62 s plus up to 6 s of jitter). That window is one budget
  for the whole outage, not one per call (``warmstart.outage``): the first failure starts the
  clock, and every later request first waits for ``/health`` to answer, polling only for what is
  left of the window, then fails at once. So a run's many calls in series (a metric, the stage's
  end, the failure hook) give up together, within the window plus a few seconds, and each
  ``TrackingError`` says how long the server had not answered;
- telemetry off, no "View run …" line per ended run, pickle deserialization refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx

from warmstart import outage
from warmstart.errors import ConfigError, TrackingError
from warmstart.settings import redact

if TYPE_CHECKING:
    from mlflow import MlflowClient

HTTP_TIMEOUT_S = 60
RETRY_SECONDS_DEFAULT = 60.0
RETRY_VARIABLE = "WARMSTART_IO_RETRY_SECONDS"
MAX_RETRIES_LIMIT = 10  # MLflow refuses more (_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT)
BACKOFF_MAX_S = 120  # urllib3's Retry.DEFAULT_BACKOFF_MAX
PROBE_TIMEOUT_S, PROBE_EVERY_S = 2.0, 1.0  # /health polls while an outage lasts
FIXED_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": str(HTTP_TIMEOUT_S),
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "1.0",
}
# The settings this module wrote into os.environ, as "KEY=value,…": an inherited value listed
# here is ours, not the user's, so a child process recomputes it from its own retry window.
OURS_VARIABLE = "WARMSTART_MLFLOW_SETTINGS"


class NotFound(TrackingError):
    """The named run, model, version or alias does not exist: retrying cannot help."""


def retry_window_s() -> float:
    """Seconds MLflow requests keep retrying a server that does not answer."""
    raw = os.environ.get(RETRY_VARIABLE, "").strip()
    try:
        value = float(raw) if raw else RETRY_SECONDS_DEFAULT
    except ValueError:
        raise ConfigError(f"{RETRY_VARIABLE}={raw!r}: give a number of seconds, e.g. 60") from None
    if value < 0:
        raise ConfigError(f"{RETRY_VARIABLE}={raw!r}: give a number of seconds >= 0")
    return value


def backoff_total_s(retries: int) -> float:
    """urllib3's total sleep over ``retries`` retries with factor 1, jitter aside (no sleep
    before the first retry, then 2, 4, 8 … s, each capped at 120 s)."""
    return float(sum(min(BACKOFF_MAX_S, 2 ** (n - 1)) for n in range(2, retries + 1)))


def retry_settings(window_s: float) -> dict[str, str]:
    """The MLflow retries (at most 10) whose total backoff is closest to ``window_s``, the one
    that covers it on a tie: one call rides out about the window (60 s: 6 retries, 62 s), and
    a call that gave up early leaves the rest of the budget to the next (``wait_for_server``)."""
    if window_s <= 0:
        return {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    best = 0
    for retries in range(MAX_RETRIES_LIMIT + 1):
        if abs(backoff_total_s(retries) - window_s) <= abs(backoff_total_s(best) - window_s):
            best = retries
    return {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(best)}


def apply_settings() -> None:
    """Put the client settings into ``os.environ`` where the user has not exported their own."""
    wanted = {**FIXED_DEFAULTS, **retry_settings(retry_window_s())}
    ours = _ours()
    for key, value in wanted.items():
        current = os.environ.get(key)
        if current is None or current == ours.get(key):
            os.environ[key] = value
            ours[key] = value
    os.environ[OURS_VARIABLE] = ",".join(f"{k}={v}" for k, v in sorted(ours.items()))


def _ours() -> dict[str, str]:
    """The values this package (in this process or a parent) put into ``os.environ``."""
    raw = os.environ.get(OURS_VARIABLE, "")
    return dict(item.split("=", 1) for item in raw.split(",") if "=" in item)


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        raise TrackingError(
            "MLFLOW_TRACKING_URI is not set: start the stack with `warmstart up` (and "
            "`eval $(warmstart env)`) or export the URI of your MLflow server"
        )
    return uri


def safe_uri(uri: str) -> str:
    """A URI fit for messages: no user:password, no secret values."""
    return redact(re.sub(r"//[^/@]*@", "//", uri))


def client() -> MlflowClient:
    """An ``MlflowClient`` for ``MLFLOW_TRACKING_URI`` with the settings above applied.

    Cheap: MLflow caches its REST store per URI. Thread-safe to use from parallel stages, since
    every call names its run explicitly (no fluent active-run state).
    """
    from mlflow import MlflowClient  # deferred: heavy

    uri = tracking_uri()
    apply_settings()
    return MlflowClient(tracking_uri=uri)


def check_server(*, timeout: float = 3.0) -> str:
    """Fail fast before any work: ``GET <uri>/health`` must answer 200 within ``timeout`` s.

    A preflight for the CLI (not retried: a server that is not up at all should be reported at
    once). Returns the tracking URI.
    """
    uri = tracking_uri()
    apply_settings()
    if not uri.startswith(("http://", "https://")):
        return uri
    user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
    auth = (user, password) if user and password else None
    try:
        response = httpx.get(uri.rstrip("/") + "/health", timeout=timeout, auth=auth)
    except httpx.HTTPError as exc:
        raise TrackingError(
            f"MLflow server unreachable at {safe_uri(uri)} (MLFLOW_TRACKING_URI; "
            f"{type(exc).__name__}): start it with `warmstart up` or fix the variable"
        ) from None
    if response.status_code in (401, 403):
        raise TrackingError(
            f"MLflow at {safe_uri(uri)} refused the credentials (HTTP {response.status_code}): "
            "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if response.status_code != 200:
        raise TrackingError(
            f"MLflow at {safe_uri(uri)} (MLFLOW_TRACKING_URI) answered /health with HTTP "
            f"{response.status_code}: check the URI, or the server's --allowed-hosts"
        )
    return uri


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an error, without credentials in URLs or secret values."""
    text = str(exc).strip()
    line = safe_uri(text.splitlines()[0] if text else type(exc).__name__)
    return line if len(line) <= limit else line[:limit] + "…"


_AUTH = re.compile(r"\b(401|403)\b|UNAUTHENTICATED|PERMISSION_DENIED|Unauthorized|Forbidden")
_DOWN = re.compile(r"Max retries exceeded|Connection(Error| refused|ResetError)|timed? ?out", re.I)
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def explain(exc: BaseException, what: str) -> TrackingError:
    """One line naming the operation, MLflow's own first line, the server and the fix."""
    where = safe_uri(os.environ.get("MLFLOW_TRACKING_URI", "?"))
    line = first_line(exc)
    if _AUTH.search(str(exc)):
        fix = (
            "check MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD (or the token) for this server"
        )
    elif _DOWN.search(str(exc)):
        fix = down_advice()
    else:
        fix = "check the server and its S3 store (`warmstart status`) and rerun"
    cls = NotFound if error_code(exc) in _MISSING else TrackingError
    return cls(f"MLflow {what} failed at {where} ({line}): {fix}")


def down_advice() -> str:
    """How long the server has not answered, against the budget, and the fix."""
    waited, window = outage.MLFLOW.waited(), retry_window_s()
    return (
        f"the server did not answer for {waited:.0f} s of retries (the budget for the whole "
        f"outage is {window:.0f} s): check `warmstart status` and MLFLOW_TRACKING_URI, or raise "
        f"{RETRY_VARIABLE}"
    )


def answers(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when the tracking server answers HTTP at all (any status; non-HTTP URIs: True)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        httpx.get(uri.rstrip("/") + "/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return True


def wait_for_server(what: str) -> None:
    """In a known outage, before a request: poll ``/health`` until the server answers or the
    outage's retry budget is spent (then one ``TrackingError``, without trying the request)."""
    if outage.MLFLOW.since() is None:
        return
    window = retry_window_s()
    while not answers():
        outage.MLFLOW.failed(time.monotonic(), window)
        left = outage.MLFLOW.left(window)
        if left <= 0:
            where = safe_uri(os.environ.get("MLFLOW_TRACKING_URI", "?"))
            raise TrackingError(f"MLflow {what} not attempted at {where}: {down_advice()}")
        time.sleep(min(PROBE_EVERY_S, left))


@contextlib.contextmanager
def errors(what: str) -> Iterator[None]:
    """Turn MLflow and HTTP failures into a one-line ``TrackingError`` (the one wrapper); in an
    outage, wait only for what is left of its retry budget (``wait_for_server``)."""
    import requests  # deferred: only with mlflow
    from mlflow.exceptions import MlflowException  # deferred: heavy

    wait_for_server(what)
    start = time.monotonic()
    try:
        yield
    except TrackingError:
        raise
    except (MlflowException, requests.RequestException, ConnectionError, TimeoutError) as exc:
        if _DOWN.search(str(exc)) and not _AUTH.search(str(exc)):
            outage.MLFLOW.failed(start, retry_window_s())
        raise explain(exc, what) from None
    outage.MLFLOW.ended()


def error_code(exc: BaseException) -> str:
    """MLflow's error code of an exception (``RESOURCE_DOES_NOT_EXIST`` …), or ``""``."""
    return str(getattr(exc, "error_code", "") or "")
