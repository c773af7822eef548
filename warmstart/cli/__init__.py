"""The `warmstart` command line: the entry point, above the flows (the library never imports
them). Errors a user can act on print in one line, without a traceback."""

from warmstart.cli import (  # noqa: F401  (registration)
    export_cmd,
    pipeline_cmds,
    predict_cmd,
    rank_cmd,
    stack_cmds,
    weights_cmd,
)
from warmstart.cli.app import app, main

__all__ = ["app", "main"]
