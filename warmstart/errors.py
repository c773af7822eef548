"""One exception type per layer. Messages name the input and the fix; the CLI prints them in one line.

``WarmstartError`` and ``StackError`` are defined by the bottom layer (``warmstart.infra``, which
depends only on the standard library and httpx) and re-exported here, so ``except StackError``
and ``except WarmstartError`` catch the same classes everywhere.
"""

from warmstart.infra.errors import StackError, WarmstartError

__all__ = [
    "ConfigError",
    "DataError",
    "StackError",
    "StorageError",
    "TrackingError",
    "WarmstartError",
]


class ConfigError(WarmstartError):
    """Bad configuration or parameters."""


class StorageError(WarmstartError):
    """S3 object storage: unreachable, refused credentials, missing bucket or object, corrupt data."""


class DataError(WarmstartError):
    """A dataset source or split is missing, malformed or inconsistent."""


class TrackingError(WarmstartError):
    """MLflow tracking or registry failure."""
