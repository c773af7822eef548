"""One exception type per layer. Messages name the input and the fix; the CLI prints them in one line."""


class WarmstartError(Exception):
    """Base class: an error a user can act on (printed without a traceback)."""


class ConfigError(WarmstartError):
    """Bad configuration or parameters."""


class StackError(WarmstartError):
    """The local stack (SeaweedFS, MLflow, Prefect) could not be started, stopped or reached."""


class StorageError(WarmstartError):
    """S3 object storage: unreachable, refused credentials, missing bucket or object, corrupt data."""


class DataError(WarmstartError):
    """A dataset source or split is missing, malformed or inconsistent."""


class TrackingError(WarmstartError):
    """MLflow tracking or registry failure."""
