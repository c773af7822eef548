"""`warmstart run` and `warmstart sweep`: validate everything, check the services, run the flow,
print the table and the verdict. Ctrl-C and SIGTERM end the flow run and its MLflow runs."""

from __future__ import annotations

import inspect
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Annotated, Any

import httpx
import typer
from pydantic import BaseModel, ValidationError

from warmstart.cli.app import app, config_error, console, err_console, friendly, split_list
from warmstart.errors import ConfigError, StackError, WarmstartError
from warmstart.params import PipelineParams, SweepParams

FLAGS = {
    "strategies": "--strategies",
    "transfer_modes": "--modes",
    "finetune_epochs": "--epochs",
    "k_values": "--k-values",
}


def build_params(cls: type[BaseModel], overrides: dict[str, Any]) -> Any:
    """The flow's parameter model from the flags given (None = the model's default)."""
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise config_error(exc, FLAGS) from None


def prefect_auth() -> tuple[str, str] | None:
    """HTTP basic credentials from PREFECT_API_AUTH_STRING (``user:password``), if set."""
    raw = os.environ.get("PREFECT_API_AUTH_STRING", "")
    return tuple(raw.split(":", 1)) if ":" in raw else None  # type: ignore[return-value]


def check_prefect() -> None:
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        raise StackError("PREFECT_API_URL is not set: run `warmstart up` or export it")
    try:
        response = httpx.get(api.rstrip("/") + "/health", timeout=5, auth=prefect_auth())
        ok = response.status_code == 200
    except httpx.HTTPError:
        ok = False
    if not ok:
        raise StackError(
            f"Prefect API unreachable at {api}: start it with `warmstart up` or fix "
            "PREFECT_API_URL (and PREFECT_API_AUTH_STRING)"
        )


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C: a KeyboardInterrupt in the main thread."""

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# After Ctrl-C/SIGTERM, how long the flow may take to end its stopped stages before exiting.
STOP_GRACE_S = 5.0


def run_flow(call: Callable[[], Any]) -> Any:
    """Run a flow in a worker thread, so Ctrl-C/SIGTERM reach this (main) thread at once: the
    run's stages stop, its MLflow runs end as KILLED, its flow run is Cancelled, and the process
    exits 130 without waiting for training threads. Any failure is one line."""
    from warmstart.tasks.stage_runs import abandon_flow_runs  # deferred: heavy (prefect)

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="warmstart-flow", daemon=True)
    with signals_interrupt():
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.2)
        except KeyboardInterrupt:
            err_console.print("interrupted: ending the flow run and its MLflow runs")
            reason = "interrupted by Ctrl-C or SIGTERM"
            ended = abandon_flow_runs(reason)
            with suppress(KeyboardInterrupt):  # a second Ctrl-C only skips the wait
                worker.join(STOP_GRACE_S)  # stages stop at their next epoch; the flow ends
            flush_prefect_logs()
            abandon_flow_runs(reason, final=True)
            err_console.print(f"ended flow run(s) {', '.join(ended) or '-'}; exit 130")
            sys.stdout.flush()
            os._exit(130)
    return _result(outcome)


def _result(outcome: dict[str, Any]) -> Any:
    exc = outcome.get("error")
    if exc is None:
        return outcome["value"]
    if isinstance(exc, WarmstartError):
        raise exc
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    raise WarmstartError(f"pipeline failed: {type(exc).__name__}: {first}") from None


def flush_prefect_logs() -> None:
    from prefect.logging.handlers import APILogWorker  # deferred: heavy (prefect)

    APILogWorker.drain_all(timeout=5)


Opt = typer.Option
SourceOpt = Annotated[str | None, Opt(help="Source: a dataset spec, or another provider's spec.")]
TargetOpt = Annotated[str | None, Opt(help="Target dataset spec.")]
KShotOpt = Annotated[int | None, Opt("--k-shot", help="Labelled target images per class.")]
StrategiesOpt = Annotated[str | None, Opt(help="Comma list from the strategy registry.")]
ModesOpt = Annotated[
    str | None, Opt(help="Comma list: finetune,linear_probe,lp_ft,freeze=<stage>.")
]
SeedsOpt = Annotated[
    int | None, Opt(help="Seeds per arm (run: selection only; the gate uses --confirm-seeds).")
]
EpochsOpt = Annotated[int | None, Opt(help="Target epochs (every arm, scratch included).")]
PretrainOpt = Annotated[int | None, Opt(help="Source pretraining epochs.")]
BackboneOpt = Annotated[str | None, Opt(help="Backbone from the registry.")]
DeviceOpt = Annotated[str | None, Opt(help="auto | cpu | cuda | mps.")]
MarginOpt = Annotated[float | None, Opt(help="Gate margin (fraction).")]
MetricOpt = Annotated[
    str | None,
    Opt(
        help="What the gate compares: accuracy | balanced_accuracy | auto (balanced when the "
        "test classes are imbalanced beyond 1.5x)."
    ),
]
KeepOpt = Annotated[
    bool | None,
    Opt("--keep-candidates", help="Register refused candidates too (tagged candidate)."),
]
LeakOpt = Annotated[
    bool | None,
    Opt("--allow-leakage", help="Run although the leakage guard found overlap (never promoted)."),
]
ConfirmOpt = Annotated[
    int | None,
    Opt("--confirm-seeds", help="Fresh seeds the gate decides on (default 5; 0: never promoted)."),
]
ValCapOpt = Annotated[
    int | None, Opt("--val-per-class", help="Cap on validation labels per class (default: all).")
]
JsonOpt = Annotated[bool, Opt("--json", help="Print the summary as JSON (for scripts).")]
DaskOpt = Annotated[
    str | None,
    Opt(help="Training on Dask: 'local' (a temporary 2-worker cluster) or tcp://host:8786."),
]
KValuesOpt = Annotated[str, Opt("--k-values", help="Comma list of labelled images per class.")]
DryRunOpt = Annotated[
    bool, Opt("--dry-run", help="Validate, print the run's plan as JSON, and exit (runs nothing).")
]


SourcesOpt = Annotated[
    str | None,
    Opt(
        "--sources",
        help="Comma list of candidate sources, each a --source spec (dataset: one candidate "
        "per strategy; torchvision:, mlflow:, checkpoint:), ranked on validation.",
    ),
]
ScoreOpt = Annotated[
    str | None, Opt("--score", help="The score that ranks (default: the benchmark's choice).")
]
TopOpt = Annotated[
    int | None,
    Opt("--top", help="With --sources: rank on validation, then run the protocol on the top M."),
]


# Every command's options by parameter name, each defined once; `options` gives a command its own.
OPTIONS: dict[str, Any] = dict(source=SourceOpt, target=TargetOpt, k_shot=KShotOpt)
OPTIONS |= dict(strategies=StrategiesOpt, modes=ModesOpt, seeds=SeedsOpt, epochs=EpochsOpt)
OPTIONS |= dict(pretrain_epochs=PretrainOpt, backbone=BackboneOpt, device=DeviceOpt)
OPTIONS |= dict(margin=MarginOpt, metric=MetricOpt, keep_candidates=KeepOpt, allow_leakage=LeakOpt)
OPTIONS |= dict(confirm_seeds=ConfirmOpt, val_per_class=ValCapOpt, json_out=JsonOpt, dask=DaskOpt)
OPTIONS |= dict(dry_run=DryRunOpt, sources=SourcesOpt, top=TopOpt, score=ScoreOpt)
OPTIONS |= dict(k_values=KValuesOpt)
RENAMED = {"modes": "transfer_modes", "epochs": "finetune_epochs"}  # option -> params field


def options(names: str, **defaults: Any) -> Callable[[Callable], Callable]:
    """Decorator: the command ``fn(**opts)`` takes the options ``names`` (space-separated, in
    ``--help`` order), each None unless ``defaults`` or its flag (``--json``, ``--dry-run``) says."""
    flags_off = {"json_out": False, "dry_run": False}

    def wrap(fn: Callable) -> Callable:
        params = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=OPTIONS[name],
                default=defaults.get(name, flags_off.get(name)),
            )
            for name in names.split()
        ]
        fn.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        return fn

    return wrap


def params_flags(opts: dict[str, Any], *skip: str) -> dict[str, Any]:
    """The parameter model's fields from a command's options (less ``skip``): comma lists split,
    ``--modes`` and ``--epochs`` under their field names."""
    split = {"strategies", "modes"}
    return {
        RENAMED.get(k, k): split_list(v) if k in split else v
        for k, v in opts.items()
        if k not in skip
    }


def check_services() -> None:
    """One line per unreachable service, before any work starts."""
    from warmstart import storage, tracking  # deferred: heavy (mlflow, boto3)

    check_prefect()
    tracking.check_server(timeout=5)
    storage.ensure_bucket()


def plan_run(params: Any, dry_run: bool) -> Any:
    """The run's plan, made once: everything checked before anything is ingested or trained
    (every k of a sweep included). ``--dry-run`` prints it and exits; otherwise the services are
    checked, log hygiene goes on, and the flow receives this very plan."""
    from warmstart import stages  # deferred: heavy (torch)
    from warmstart.logsafe import install  # deferred: with prefect's loggers
    from warmstart.stages.leakage import refuse_same_dataset  # deferred: heavy (torch)

    plan = stages.make_plan(params)
    refuse_same_dataset(plan)
    if dry_run:
        sys.stdout.write(json.dumps(plan.to_dict(), indent=1) + "\n")
        raise typer.Exit(0)
    check_services()
    install()
    return plan


def ranked(sources: str | None, top: int | None, flags: dict, dry_run: bool, show: bool) -> Any:
    """`run --sources … --top M`: the plan of the top M after ranking on validation."""
    from warmstart.cli.rank_cmd import ranked_plan  # cycle: rank_cmd reuses these options

    if not sources:
        raise ConfigError("--top needs --sources A,B,...: the candidates to rank")
    return ranked_plan(sources, top, flags, dry_run, show)


@app.command()
@friendly
@options(
    "source target k_shot strategies modes seeds epochs pretrain_epochs backbone device margin "
    "metric keep_candidates allow_leakage confirm_seeds val_per_class json_out dask dry_run "
    "sources top score"
)
def run(**opts: Any) -> None:
    """Run the transfer pipeline once against the configured services; print the table and verdict.
    Omitted flags keep the demo's defaults (see README: MNIST-5k -> UCI digits, k=5). With
    --sources A,B,C --top M: rank the candidates on validation first, run on the top M only."""
    from warmstart.cli.progress import stage_display, stage_times  # deferred: heavy (prefect)
    from warmstart.cli.summary import print_summary  # deferred: heavy (promotion, numpy)
    from warmstart.flows.dask_runner import run_on_dask  # deferred: heavy (prefect, dask)
    from warmstart.flows.pipeline import transfer_pipeline  # deferred: heavy (prefect, torch)

    sources, top, score, dask, json_out, dry_run = (
        opts[k] for k in ("sources", "top", "score", "dask", "json_out", "dry_run")
    )
    flags = params_flags(opts, "sources", "top", "score", "dask", "json_out", "dry_run")
    if sources or top is not None:
        plan = ranked(sources, top, {**flags, "score": score}, dry_run, not json_out)
    else:
        plan = plan_run(build_params(PipelineParams, flags), dry_run)
    t0 = time.monotonic()
    if dask:  # stages train in the Dask workers' processes: no live display here
        address = None if dask == "local" else dask
        with stage_display(False):
            summary = run_flow(lambda: run_on_dask(plan.params, plan, address=address))
    else:
        with stage_times() as times, stage_display(not json_out):
            summary = run_flow(lambda: transfer_pipeline(plan.params, plan))
        summary["time_summary"] = times.line()
    if json_out:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    else:
        print_summary(summary, time.monotonic() - t0)


@app.command()
@friendly
@options("source target k_values strategies modes seeds epochs dry_run", k_values="1,5,10,20,50")
def sweep(**opts: Any) -> None:
    """Label efficiency: every arm at every k, mean [95% CI]; table and plot in MLflow and Prefect."""
    from warmstart.cli.progress import stage_display  # deferred: heavy (prefect, mlflow)
    from warmstart.flows.label_efficiency import label_efficiency  # deferred: heavy (prefect)

    k_values = opts["k_values"]
    try:
        ks = [int(k) for k in k_values.split(",") if k.strip()]
    except ValueError:
        raise ConfigError(f"--k-values {k_values!r}: write integers like 1,5,10") from None
    flags = params_flags(opts, "dry_run") | {"k_values": ks}
    plan = plan_run(build_params(SweepParams, flags), opts["dry_run"])  # every k checked here
    with stage_display(True):
        out = run_flow(lambda: label_efficiency(plan.params, plan))
    console.print(out["markdown"], highlight=False)
