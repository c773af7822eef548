"""`warmstart weights add|list`: the mirror of published weights in the object store, so a run
needs no network (see ``warmstart.weights``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from warmstart.cli.app import app, console, friendly

weights_app = typer.Typer(
    help="Mirror published weights in the object store (offline `torchvision:` sources).",
    no_args_is_help=True,
)
app.add_typer(weights_app, name="weights")

AsOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="resnet18.IMAGENET1K_V1 (a torchvision enum: the file must match its hash), or your "
        "own name with --arch. Default: the torchvision enum whose URL has this file name.",
    ),
]
ArchOpt = Annotated[
    str | None, typer.Option(help="The torchvision model your own weights are for, e.g. resnet18.")
]


@weights_app.command("add")
@friendly
def add_cmd(
    file: Annotated[Path, typer.Argument(help="A .pth (state dict) or .safetensors file.")],
    as_name: AsOpt = None,
    arch: ArchOpt = None,
) -> None:
    """Check a weights file (weights_only load, keys and shapes, hash) and upload it."""
    from warmstart import storage, weights  # deferred: heavy (torch, torchvision, boto3)

    storage.ensure_bucket()
    entry = weights.add(file, as_name, arch)
    console.print(
        f"added {entry.name} ({entry.arch}, sha256 {entry.sha256[:12]}…) as {entry.uri}",
        highlight=False,
    )


@weights_app.command("list")
@friendly
def list_cmd() -> None:
    """The mirrored weights: name, architecture, enum, sha256, size."""
    from warmstart import weights  # deferred: heavy (torch, torchvision, boto3)

    table = Table("name", "arch", "enum", "sha256", "MB", "uri")
    for e in weights.entries():
        table.add_row(e.name, e.arch, e.enum or "-", e.sha256[:12], f"{e.size / 1e6:.1f}", e.uri)
    console.print(table)
