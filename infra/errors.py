"""The errors the local stack raises: one line that names the input and the fix.

``WarmstartError`` is the base of every error a user can act on (the CLI prints it without a
traceback). It lives here because ``infra`` depends only on the standard library and httpx;
``warmstart.errors`` re-exports both names, so ``except StackError`` and ``except WarmstartError``
catch the same classes everywhere.
"""


class WarmstartError(Exception):
    """Base class: an error a user can act on (printed without a traceback)."""


class StackError(WarmstartError):
    """The local stack (SeaweedFS, MLflow, Prefect) could not be started, stopped or reached."""
