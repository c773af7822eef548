"""`warmstart predict`: classify a folder of images with a registered model."""

from __future__ import annotations

from typing import Annotated

import typer

from warmstart.cli.app import app, console, err_console, friendly
from warmstart.errors import ConfigError

ImagesArg = Annotated[
    str,
    typer.Argument(
        help="Images to classify: a folder (class sub-folders optional), one file, or "
        "s3://bucket/prefix."
    ),
]
ModelOpt = Annotated[
    str,
    typer.Option(
        help="Model URI: models:/warmstart-<target>@champion or models:/<name>/<version>."
    ),
]
OutOpt = Annotated[
    str, typer.Option(help="Where to write file,class,probability: .csv or .parquet, or s3://.")
]


TopKOpt = Annotated[
    int,
    typer.Option(
        "--top-k",
        help="Classes per image, most probable first: 1 writes file,class,probability; N writes "
        "file,class_1,probability_1,...,class_N,probability_N.",
    ),
]


@app.command()
@friendly
def predict(
    images: ImagesArg,
    model: ModelOpt,
    out: OutOpt,
    batch_size: Annotated[int, typer.Option(help="Images per model call.")] = 256,
    top_k: TopKOpt = 1,
) -> None:
    """Classify a folder of images with a registered model; write one row per image.

    Files that are not images are skipped (and counted). When every image sits in a sub-folder
    named after one of the model's classes, the accuracy is printed and a confusion matrix is
    written next to --out (preds.csv -> preds.confusion.csv: one row per true class)."""
    from warmstart import predict as predict_mod  # deferred: heavy (mlflow, torch)

    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: use a positive number of images")
    result = predict_mod.predict(model, images, out, batch_size=batch_size, top_k=top_k)
    converted = ", ".join(f"{k} x{v}" for k, v in sorted(result["conversions"].items()))
    shape = "x".join(str(s) for s in result["input_shape"])
    console.print(
        f"{result['images']} predictions by {result['model_uri']} (input {shape}, classes from "
        f"{result['classes_from']}) -> {result['out']}",
        highlight=False,
    )
    if converted:
        console.print(f"  converted: {converted}", highlight=False)
    if result["skipped"]:
        names = ", ".join(result["skipped"][:5]) + (", ..." if len(result["skipped"]) > 5 else "")
        err_console.print(
            f"warning: skipped {len(result['skipped'])} file(s) that are not images: {names}",
            highlight=False,
            soft_wrap=True,
        )
    if result["accuracy"] is not None:
        console.print(
            f"  accuracy {result['accuracy']:.3f} on {result['labelled']} images labelled by "
            f"their class folders; confusion matrix -> {result['confusion']}",
            highlight=False,
            soft_wrap=True,
        )
