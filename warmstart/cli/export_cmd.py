"""`warmstart export`: a registered version as ONNX, TorchScript or a torch.export program."""

from __future__ import annotations

from typing import Annotated

import typer

from warmstart.cli.app import app, console, friendly

ModelArg = Annotated[
    str,
    typer.Argument(help="Model URI: models:/warmstart-<target>@champion or models:/<name>/<n>."),
]
FormatOpt = Annotated[str, typer.Option("--format", help="onnx | torchscript | exported-program.")]
OutOpt = Annotated[str, typer.Option(help="Folder for the exported file and its model.json.")]


@app.command()
@friendly
def export(
    model: ModelArg,
    fmt: FormatOpt = "onnx",
    out: OutOpt = "export",
    log: Annotated[
        bool, typer.Option(help="Keep the export beside the version in MLflow (artifact + tags).")
    ] = True,
) -> None:
    """Export a registered model with torch's own exporters, checked against torch.

    The graph takes uint8 images N x C x H x W at the model's size and returns logits; the
    scaling to [0, 1] is inside it. model.json beside it says what the caller must do first
    (channels, resize) and lists the classes."""
    from warmstart import export as export_mod  # deferred: heavy (mlflow, torch)

    export_mod.check_format(fmt)
    meta = export_mod.export(model, fmt, out, log=log)
    c, h, w = meta["input"]["shape"][1:]
    console.print(
        f"{meta['format']} export of {meta['model_uri']} -> {meta['path']} (sha256 "
        f"{meta['sha256'][:12]}); max |logit difference| vs torch "
        f"{meta['parity']['max_abs_diff']:.1e} on {meta['parity']['images']} images",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"  input 'image': uint8 N x {c} x {h} x {w} (0-255; the /255 scaling is in the graph); "
        f"output 'logits': N x {len(meta['classes'])}, softmax for probabilities",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        "  before calling it: convert to the model's channels and resize to "
        f"{w}x{h} as `warmstart predict` does; classes and steps in {out}/model.json",
        highlight=False,
        soft_wrap=True,
    )
    if meta["logged_to"]:
        console.print(f"  kept beside the version: {meta['logged_to']}", highlight=False)
