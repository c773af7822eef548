"""The `warmstart` command line. Errors a user can act on print in one line, without a traceback."""

from __future__ import annotations

import functools
import os
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

    from warmstart.infra import stack

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
    from warmstart.infra import stack

    stack.down(echo=lambda s: console.print(s, highlight=False))


@app.command()
@friendly
def status() -> None:
    """Each service: URL, pid, health. Exit code 1 if any is not healthy."""
    from warmstart.infra import stack

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
def deploy() -> None:
    """Register deploy/prefect.yaml's deployments and start a process worker (stopped by `down`)."""
    from warmstart.infra import deploy as deploy_mod
    from warmstart.infra import stack

    cfg = stack.StackConfig.from_env()
    names, pid = deploy_mod.deploy(cfg)
    console.print(f"deployments: {', '.join(names)}; worker pid {pid} on pool {deploy_mod.POOL}")
    console.print(
        "  run one: prefect deployment run 'transfer-pipeline/nightly' -p params='{\"k_shot\": 5}'"
    )
    console.print(f"  or from the UI: {cfg.prefect_url}/deployments")


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


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def check_services() -> None:
    """One line per unreachable service, before any work starts."""
    import httpx

    from warmstart import storage, tracking
    from warmstart.errors import StackError

    api = os.environ.get("PREFECT_API_URL")
    if not api:
        raise StackError("PREFECT_API_URL is not set: run `warmstart up` or export it")
    try:
        ok = httpx.get(api.rstrip("/") + "/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        ok = False
    if not ok:
        raise StackError(
            f"Prefect API unreachable at {api}: start it with `warmstart up` or fix PREFECT_API_URL"
        )
    tracking.configure(timeout=5)
    storage.ensure_bucket()


@app.command()
@friendly
def run(
    source: Annotated[str | None, typer.Option(help="Source dataset spec.")] = None,
    target: Annotated[str | None, typer.Option(help="Target dataset spec.")] = None,
    k_shot: Annotated[
        int | None, typer.Option("--k-shot", help="Labelled target images per class.")
    ] = None,
    strategies: Annotated[
        str | None, typer.Option(help="Comma list: supervised,gan,autoencoder.")
    ] = None,
    modes: Annotated[
        str | None, typer.Option(help="Comma list: finetune,linear_probe,lp_ft,freeze=<stage>.")
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="Number of seeds.")] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Target epochs (every arm, scratch included).")
    ] = None,
    pretrain_epochs: Annotated[int | None, typer.Option(help="Source pretraining epochs.")] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone from the registry.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps.")] = None,
    margin: Annotated[float | None, typer.Option(help="Gate margin (fraction).")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (for scripts).")
    ] = False,
    dask: Annotated[
        str | None,
        typer.Option(
            help="Run the training tasks on Dask: 'local' (a temporary 2-worker cluster) or a "
            "scheduler address such as tcp://scheduler:8786."
        ),
    ] = None,
) -> None:
    """Run the transfer pipeline once against the configured services; print the table and verdict."""
    import time

    from pydantic import ValidationError

    from warmstart.errors import ConfigError
    from warmstart.params import PipelineParams
    from warmstart.settings import load_env

    load_env()
    overrides = {
        "source": source,
        "target": target,
        "k_shot": k_shot,
        "strategies": _split(strategies),
        "transfer_modes": _split(modes),
        "seeds": seeds,
        "finetune_epochs": epochs,
        "pretrain_epochs": pretrain_epochs,
        "backbone": backbone,
        "device": device,
        "margin": margin,
    }
    try:
        params = PipelineParams(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"--{where.split('.')[0].replace('_', '-')}: {first['msg']} (got {first.get('input')!r})"
        ) from None
    from warmstart import pipeline as core

    core.validate(params)
    check_services()
    from warmstart import logsafe
    from warmstart.flows.pipeline import transfer_pipeline

    logsafe.install()
    t0 = time.monotonic()
    try:
        if dask:
            from warmstart.flows.dask_runner import run_on_dask

            summary = run_on_dask(params, address=None if dask == "local" else dask)
        else:
            summary = transfer_pipeline(params)
    except WarmstartError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line, no traceback from deep inside a library
        from warmstart.errors import WarmstartError as _WE

        raise _WE(
            f"pipeline failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        ) from None
    if json_out:
        import json

        sys.stdout.write(json.dumps(summary, default=str) + "\n")
        return
    print_summary(summary, time.monotonic() - t0)


@app.command()
@friendly
def sweep(
    source: Annotated[str | None, typer.Option(help="Source dataset spec.")] = None,
    target: Annotated[str | None, typer.Option(help="Target dataset spec.")] = None,
    k_values: Annotated[
        str, typer.Option("--k-values", help="Comma list of labelled images per class.")
    ] = "1,5,10,20,50",
    strategies: Annotated[str | None, typer.Option(help="Comma list of strategies.")] = None,
    modes: Annotated[str | None, typer.Option(help="Comma list of transfer modes.")] = None,
    seeds: Annotated[
        int | None, typer.Option(help="Number of seeds (>= 3 for honest CIs).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Target epochs for every arm.")] = None,
) -> None:
    """Label efficiency: every arm at every k, mean [95% CI]; table and plot in MLflow and Prefect."""
    from pydantic import ValidationError

    from warmstart.errors import ConfigError
    from warmstart.settings import load_env

    load_env()
    from warmstart.sweep import SweepParams

    overrides = {
        "source": source,
        "target": target,
        "strategies": _split(strategies),
        "transfer_modes": _split(modes),
        "seeds": seeds,
        "finetune_epochs": epochs,
    }
    try:
        ks = [int(k) for k in k_values.split(",") if k.strip()]
        params = SweepParams(**{k: v for k, v in overrides.items() if v is not None}, k_values=ks)
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            raise ConfigError(f"{first['loc'][0]}: {first['msg']}") from None
        raise ConfigError(f"--k-values {k_values!r}: write integers like 1,5,10") from None
    from warmstart import pipeline as core

    core.validate(params.at(params.k_values[0]))
    check_services()
    from warmstart import logsafe
    from warmstart.flows.label_efficiency import label_efficiency

    logsafe.install()
    out = label_efficiency(params)
    console.print(out["markdown"], highlight=False)


def print_summary(summary: dict, seconds: float) -> None:
    table = Table(
        "arm",
        "seeds",
        "val acc",
        "test acc (95% CI)",
        "Δ vs scratch (95% CI)",
        "pretrain s",
        "fine-tune s",
        title="transfer vs scratch on the target test split",
    )
    for r in summary["table"]:
        table.add_row(
            r["arm"],
            str(r["seeds"]),
            f"{100 * r['val_acc']:.1f}%",
            f"{100 * r['test_acc']:.1f}% [{100 * r['test_ci'][0]:.1f}, {100 * r['test_ci'][1]:.1f}]",
            f"{100 * r['delta_vs_scratch']:+.1f} [{100 * r['delta_ci'][0]:+.1f}, {100 * r['delta_ci'][1]:+.1f}]",
            f"{r['pretrain_seconds']:.1f}",
            f"{r['finetune_seconds']:.1f}",
        )
    out = console if console.is_terminal else Console(width=160)
    out.print(table)
    colour = "green" if summary["passed"] else "yellow"
    console.print(f"[bold {colour}]{summary['verdict']}[/]: {summary['reason']}", highlight=False)
    if summary.get("model_uri"):
        console.print(f"model: {summary['model_uri']}", highlight=False)
    console.print(f"wall time {seconds:.1f} s")
    prefect_ui = os.environ.get("PREFECT_API_URL", "").removesuffix("/api")
    console.print(
        f"Prefect UI: {prefect_ui}/runs/flow-run/{summary.get('flow_run_id', '')}", highlight=False
    )
    console.print(
        f"MLflow UI:  {summary.get('mlflow_run_url', os.environ.get('MLFLOW_TRACKING_URI', ''))}",
        highlight=False,
    )


@app.command()
@friendly
def predict(
    images: Annotated[
        str,
        typer.Argument(
            help="Images to classify: a folder (class sub-folders optional), one file, "
            "or s3://bucket/prefix."
        ),
    ],
    model: Annotated[
        str,
        typer.Option(
            help="Model URI: models:/warmstart-<target>@champion or models:/<name>/<version>."
        ),
    ],
    out: Annotated[
        str, typer.Option(help="Where to write file,class,probability: .csv or .parquet, or s3://.")
    ],
    batch_size: Annotated[int, typer.Option(help="Images per model call.")] = 256,
) -> None:
    """Classify a folder of images with a registered model; write one row per image."""
    from warmstart import predict as predict_mod
    from warmstart.errors import ConfigError
    from warmstart.settings import load_env

    load_env()
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: use a positive number of images")
    result = predict_mod.predict(model, images, out, batch_size=batch_size)
    converted = ", ".join(f"{k} x{v}" for k, v in sorted(result["conversions"].items()))
    shape = "x".join(str(s) for s in result["input_shape"])
    console.print(
        f"{result['images']} predictions by {result['model_uri']} (input {shape}, classes from "
        f"{result['classes_from']}) -> {result['out']}",
        highlight=False,
    )
    if converted:
        console.print(f"  converted: {converted}", highlight=False)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
