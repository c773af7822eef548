"""The `warmstart` command line. Errors a user can act on print in one line, without a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from warmstart.errors import WarmstartError

app = typer.Typer(
    name="warmstart",
    help="Transfer learning for image recognition, proven against a scratch baseline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def friendly(fn: Callable) -> Callable:
    """Print WarmstartError in one line (secrets redacted) and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except WarmstartError as exc:
            from warmstart.settings import redact

            err_console.print(
                f"[bold red]error:[/] {redact(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@friendly
def up() -> None:
    """Start the local stack (SeaweedFS S3, MLflow, Prefect) or reuse what is running."""
    import time

    from infra import stack

    cfg = stack.StackConfig.from_env()
    t0 = time.monotonic()
    stack.up(cfg, echo=lambda s: console.print(s, highlight=False))
    console.print(f"stack ready in {time.monotonic() - t0:.1f} s")
    console.print(f"  Prefect UI  {cfg.prefect_url}")
    console.print(f"  MLflow UI   {cfg.mlflow_url}")
    console.print(f"  S3 store    {cfg.s3_url}  (bucket {cfg.bucket})")
    console.print(f"  clients:    eval $(warmstart env)   # reads {cfg.home / 'env'}")


@app.command()
@friendly
def down() -> None:
    """Stop the processes `warmstart up` started. All data is kept."""
    from infra import stack

    stack.down(echo=lambda s: console.print(s, highlight=False))


@app.command()
@friendly
def status() -> None:
    """Each service: URL, pid, health. Exit code 1 if any is not healthy."""
    from infra import stack

    rows = stack.status()
    table = Table("service", "url", "pid", "health", "note")
    for row in rows:
        table.add_row(
            row.name,
            row.url,
            str(row.pid or "-"),
            "[green]healthy[/]" if row.healthy else "[red]down[/]",
            row.note,
        )
    console.print(table)
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


@app.command()
@friendly
def env(
    show_secrets: Annotated[
        bool, typer.Option(help="Required to print the keys (they are secrets).")
    ] = True,
) -> None:
    """Print the client variables for `eval $(warmstart env)` (contains the S3 keys)."""
    from warmstart.errors import StackError
    from warmstart.settings import env_file, read_env_file

    values = read_env_file()
    if not values:
        raise StackError(f"no {env_file()} yet: run `warmstart up` first")
    for key, value in values.items():
        if not show_secrets and key in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"):
            value = "***"
        sys.stdout.write(f"export {key}={value}\n")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
