"""`warmstart rank`: which source? Every candidate planned (each refusal one line, before any
work), then the `rank-sources` flow: frozen features of the target's k-shot train and
validation images per candidate and every score; the table, or with `--json` the ranked list.
`warmstart run --sources … --top M` ranks first, then runs the protocol on the top M."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from warmstart.cli.app import app, console, friendly, split_list
from warmstart.cli.pipeline_cmds import (
    build_params,
    check_services,
    options,
    params_flags,
    run_flow,
)
from warmstart.errors import ConfigError
from warmstart.params import RankParams


def rank_params(sources: str | None, flags: dict[str, Any]) -> RankParams:
    """The ranking's parameters from the flags given (``--sources`` is required)."""
    if not sources:
        raise ConfigError("--sources is required: give two or more candidates, e.g. --sources A,B")
    return build_params(RankParams, {**flags, "sources": split_list(sources)})


def plan_ranking(params: RankParams, dry_run: bool) -> list:
    """Every candidate planned before any work (``--dry-run`` prints the plans and exits);
    then the services are checked and log hygiene goes on."""
    from warmstart.logsafe import install  # deferred: with prefect's loggers
    from warmstart.ranking.candidates import plan_candidates, plans_of  # deferred: heavy (torch)

    candidates = plan_candidates(params)
    if dry_run:
        plans = [p.to_dict() for p in plans_of(candidates)]
        sys.stdout.write(json.dumps(plans, indent=1) + "\n")
        raise typer.Exit(0)
    check_services()
    install()
    return candidates


def run_ranking(params: RankParams, candidates: list, display: bool) -> dict:
    """The `rank-sources` flow on the plans made here."""
    from warmstart.cli.progress import stage_display  # deferred: heavy (prefect, mlflow)
    from warmstart.flows.rank import rank_sources  # deferred: heavy (prefect, torch)
    from warmstart.ranking.candidates import plans_of  # deferred: heavy (torch)

    with stage_display(display):
        return run_flow(lambda: rank_sources(params, plans_of(candidates)))


def print_ranking(out: dict) -> None:
    table = Table(*out["table"][0], title=f"source ranking — {out['target']}, k={out['k_shot']}")
    for row in out["table"]:
        table.add_row(*row.values())
    (console if console.is_terminal else Console(width=180)).print(table)
    console.print(f"[bold]{out['line']}[/]", highlight=False)


@app.command()
@friendly
@options(
    "sources target k_shot strategies pretrain_epochs backbone device val_per_class score "
    "json_out dry_run"
)
def rank(**opts: Any) -> None:
    """Which source? Rank candidate sources on the target's k-shot train and validation images
    (frozen features, one pass each; never the test images) and print the table: every score
    and the feature-extraction seconds. `--json` prints the ranked list with specs and scores."""
    # --backbone is the dataset candidates' (a torchvision: one sets its own)
    params = rank_params(opts["sources"], params_flags(opts, "sources", "json_out", "dry_run"))
    candidates = plan_ranking(params, opts["dry_run"])
    out = run_ranking(params, candidates, not opts["json_out"])
    if opts["json_out"]:
        keep = ("score", "chosen", "line", "ranked", "target", "k_shot")
        keep += ("flow_run_id", "mlflow_run_id")
        sys.stdout.write(json.dumps({k: out[k] for k in keep}) + "\n")
    else:
        print_ranking(out)


def ranked_plan(sources: str, top: int | None, flags: dict[str, Any], dry_run: bool, show: bool):
    """`run --sources … --top M`: rank (validation only), print it, and return the plan of the
    top M with the pruned candidates named; scratch's search follows the kept arms."""
    from warmstart.ranking.candidates import prune  # deferred: heavy (torch)
    from warmstart.ranking.order import Ranking  # deferred: with prune

    if flags.get("source"):
        raise ConfigError("give --source or --sources, not both")
    params = rank_params(sources, {**flags, "top": top or 1})
    candidates = plan_ranking(params, dry_run)
    out = run_ranking(params, candidates, show)
    plan = prune(candidates, Ranking.from_dict(out), params.top or 1)
    if show:  # with --json, stdout is the run's summary only (it names the pruned candidates)
        print_ranking(out)
        console.print(plan.pruned, highlight=False)
    return plan
