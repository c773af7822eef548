"""The Typer app, its consoles and the one-line error wrapper every command uses."""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer
from pydantic import ValidationError
from rich.console import Console

from warmstart import settings
from warmstart.errors import ConfigError, WarmstartError
from warmstart.settings import redact

app = typer.Typer(
    name="warmstart",
    help="Transfer learning for image recognition, proven against a scratch baseline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def load_client_env() -> None:
    """Before any command: the variables `warmstart up` wrote to .warmstart/env, for those not
    exported (Prefect and MLflow read their settings when first imported, so this comes first)."""
    settings.load_env()


def friendly(fn: Callable) -> Callable:
    """Print WarmstartError in one line (secrets redacted) and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except WarmstartError as exc:
            err_console.print(
                f"[bold red]error:[/] {redact(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def config_error(exc: ValidationError, flags: dict[str, str]) -> ConfigError:
    """A pydantic error as one line naming the flag the user typed (``flags``: field -> flag)."""
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    msg = first["msg"].removeprefix("Value error, ")
    if not field:
        return ConfigError(msg)
    flag = flags.get(field, "--" + field.replace("_", "-"))
    return ConfigError(f"{flag}: {msg} (got {first.get('input')!r})")


def split_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def main() -> None:  # pragma: no cover - console entry
    app()
