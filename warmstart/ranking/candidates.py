"""The candidates of a ranking: one ``RunPlan`` per candidate source, each made by
``stages.make_plan`` (the one place a source spec is resolved to its provider), and one
candidate per label of that plan's source (a dataset source: one per strategy, its pretraining
the cached stage). Every refusal is one ``ConfigError`` line naming the flag and the fix, made
before anything is ingested or trained."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pydantic import ValidationError

from warmstart.contracts import RunPlan
from warmstart.errors import ConfigError
from warmstart.params import RankParams
from warmstart.ranking.order import Ranking, pruned_line
from warmstart.stages.leakage import refuse_same_dataset
from warmstart.stages.validate import make_plan


@dataclass(frozen=True)
class Candidate:
    """One thing a ranking scores: a planned source and one of its labels (a strategy for a
    dataset source, else the provider's one label)."""

    plan: RunPlan
    label: str

    @property
    def spec(self) -> str:
        return self.plan.source.spec

    @property
    def name(self) -> str:
        """``<spec>`` for weights; ``<spec> × <strategy>`` for a dataset pretrained here."""
        return f"{self.spec} × {self.label}" if self.plan.source.needs_dataset else self.spec


def check_ranking(params: RankParams, count: int | None = None) -> None:
    """The flags of a ranking that need no service: the score's name and, given the number of
    candidates (a dataset source counts once per strategy), ``--top``."""
    from warmstart.ranking import scores  # deferred: the score registry (numpy)

    if params.score != "default" and params.score not in scores.SCORES.names():
        choices = ", ".join(["default", *scores.SCORES.names()])
        raise ConfigError(f"--score {params.score}: unknown score; choose from {choices}")
    n = count
    if n is not None and params.top is not None and params.top >= n:
        raise ConfigError(
            f"--top {params.top} keeps every one of the {n} candidates: give --top below {n}, "
            "or drop --top to run the protocol on one --source"
        )


def score_name(params: RankParams) -> str:
    """The score that ranks (``default``: the benchmark's choice, ``scores.DEFAULT_SCORE``)."""
    from warmstart.ranking import scores  # deferred: the score registry (numpy)

    return scores.DEFAULT_SCORE if params.score == "default" else params.score


def plan_one(params: RankParams, spec: str) -> RunPlan:
    """The candidate's plan through ``make_plan``; its refusals name ``--sources``' item."""
    try:
        plan = make_plan(params.candidate(spec))
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"--sources {spec}: {msg}") from None
    except ConfigError as exc:
        raise ConfigError(f"--sources {spec}: {exc}") from None
    refuse_same_dataset(plan)
    return plan


def plan_candidates(params: RankParams) -> list[Candidate]:
    """Every candidate, in the order given: each source planned (resolved, checked, pinned),
    then one candidate per label; ``--top M`` refused when no M of them can share one run."""
    check_ranking(params)
    plans = [plan_one(params, spec) for spec in params.sources]
    candidates = [Candidate(p, label) for p in plans for label in p.source.labels]
    check_ranking(params, len(candidates))
    check_shared(candidates, params.top or 1)
    return candidates


def plans_of(candidates: list[Candidate]) -> list[RunPlan]:
    """The distinct plans behind the candidates (one per source spec), in order."""
    return list({c.spec: c.plan for c in candidates}.values())


def inputs_of(plan: RunPlan) -> tuple[str, str]:
    """What every arm of one run shares: the target as ingested (input preset, image size,
    channels) and the backbone (scratch is the same architecture as every transfer arm)."""
    return plan.target, plan.params.backbone


def refuse_mixed(top: int, pair: tuple[Candidate, Candidate]) -> None:
    """One line naming two candidates that cannot share one run, and the fix."""
    (a, pa), (b, pb) = ((c, inputs_of(c.plan)) for c in pair)
    what = (
        f"target inputs ({pa[0]} vs {pb[0]})"
        if pa[0] != pb[0]
        else f"backbones ({pa[1]} vs {pb[1]}; scratch must be the same architecture)"
    )
    raise ConfigError(
        f"--top {top}: {a.name} and {b.name} need different {what} and cannot share one run: "
        "use --top 1, or rank candidates with one backbone and one input size"
    )


def check_shared(candidates: list[Candidate], top: int) -> None:
    """Before anything is ranked: refuse ``--top`` when no ``top`` candidates could share one
    run (every group of candidates with the same inputs and backbone is smaller than ``top``)."""
    groups: dict[tuple[str, str], list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(inputs_of(c.plan), []).append(c)
    if top > 1 and len(groups) > 1 and max(map(len, groups.values())) < top:
        first, second = (g[0] for g in list(groups.values())[:2])
        refuse_mixed(top, (first, second))


def prune(candidates: list[Candidate], ranking: Ranking, top: int) -> RunPlan:
    """The one plan the protocol runs after ranking: every candidate of the top ``top``, each
    source with only its kept labels (a dataset: its kept strategies), and the line naming what
    was pruned (and by which score). Scratch's search (one grid point per transfer arm,
    ``scratch_grid``) shrinks with the transfer side and stays equal to it. Kept candidates that
    need different target inputs or backbones are refused in one line."""
    kept = [
        next(c for c in candidates if (c.spec, c.label) == (r.spec, r.label))
        for r in ranking.top(top)
    ]
    for c in kept[1:]:
        if inputs_of(c.plan) != inputs_of(kept[0].plan):
            refuse_mixed(top, (kept[0], c))
    plans = []
    for spec in dict.fromkeys(c.spec for c in kept):
        plan = next(c.plan for c in kept if c.spec == spec)
        if plan.source.needs_dataset:
            labels = {c.label for c in kept if c.spec == spec}
            strategies = [s for s in plan.params.strategies if s in labels]
            plan = make_plan(plan.params.model_copy(update={"strategies": strategies}))
        plans.append(plan)
    sources = tuple(p.source for p in plans)
    return replace(plans[0], sources=sources, pruned=pruned_line(ranking, top))
