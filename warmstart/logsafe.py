"""Log hygiene for user-facing runs: an error a user can act on (WarmstartError) is logged as its
one-line message, without a traceback from deep inside Prefect, torch or boto3; secret values are
redacted from every record. Installed by the CLI (no side effects at import)."""

from __future__ import annotations

import logging

from warmstart.errors import WarmstartError
from warmstart.settings import redact

LOGGERS = (
    "prefect",
    "prefect.task_runs",
    "prefect.flow_runs",
    "prefect.flow_engine",
    "prefect.task_engine",
)


class ActionableErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, WarmstartError):
            record.exc_info = None
            record.exc_text = None
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install() -> None:
    flt = ActionableErrors()
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ActionableErrors) for f in logger.filters):
            logger.addFilter(flt)
