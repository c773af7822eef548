"""The run's plan, made once before anything is ingested, for the CLI (which prints and submits
it), the flow's ``validate-params`` task (when no plan was handed in: a deployment or the UI)
and the Prefect form. Names (strategies, modes, backbone) are checked by ``PipelineParams``
itself; here: the source resolved to its provider (the one place a source spec is resolved),
the dataset specs (parse, exist, options), every k against the target's smallest class, the
image size against the backbone, and the source provider's checks. Every error is a
``ConfigError`` of one line naming the flag the user typed and the fix."""

from __future__ import annotations

from warmstart.contracts import PlannedSource, RunPlan, SplitPlan
from warmstart.errors import ConfigError
from warmstart.models import ModelError, get_backbone
from warmstart.params import PipelineParams, SweepParams
from warmstart.stages.checks import ClassCounts, class_counts, parse_flag, training_pool
from warmstart.stages.data import SPLIT_SEED
from warmstart.stages.sources import SourceProvider, provider_for


def make_plan(params: PipelineParams) -> RunPlan:
    """Refuse bad input with one line (flag and fix) before anything is ingested; return the
    plan every stage of the run reads: the source resolved and pinned by its provider, the
    target with the source's input preset applied, the split and every k (a sweep's too)."""
    provider = provider_for(params.source)
    params = params.model_copy(update={"target": provider.target_spec(params)})
    k_values = tuple(params.k_values) if isinstance(params, SweepParams) else (params.k_shot,)
    check(params, provider, k_values)
    provider.validate(params)
    params = provider.pin(params)
    source = PlannedSource(
        spec=params.source,
        provider=provider.name,
        needs_dataset=provider.needs_dataset,
        labels=tuple(provider.labels(params)),
        learned_from=tuple(provider.learned_from(params)),
    )
    split = SplitPlan(params.val_fraction, params.test_fraction, SPLIT_SEED)
    return RunPlan(params, (source,), params.target, split, k_values)


def check(params: PipelineParams, provider: SourceProvider, k_values: tuple[int, ...]) -> None:
    """The dataset specs, the image sizes against the backbone and every k against the target."""
    target = parse_flag("--target", params.target)
    source = parse_flag("--source", params.source) if provider.needs_dataset else None
    counts = class_counts("--target", target)
    size = target.size or (counts.size if counts else None)
    if size is not None:
        check_image_size(params.backbone, size, "--target", params.target)
    if source is not None and source.size is not None:
        check_image_size(params.backbone, source.size, "--source", params.source)
    if counts is not None:
        check_k_shot(params, counts, k_values)


def check_image_size(backbone: str, size: tuple[int, int], flag: str, spec: str) -> None:
    """The backbone's own limits: building it (no head, no weights) raises what it refuses."""
    try:
        get_backbone(backbone, in_channels=1, num_classes=0, image_size=size)
    except ModelError as exc:
        if "?size=" in str(exc):  # the backbone's own advice (torchvision models)
            raise ConfigError(f"{flag} {spec}: {exc}") from None
        raise ConfigError(
            f"{flag} {spec}: images of {size[0]}x{size[1]} px do not fit backbone {backbone!r} "
            f"({exc}); add ?size=HxW to {flag} with a supported size"
        ) from None


def largest_k(params: PipelineParams, counts: ClassCounts) -> tuple[int, str]:
    """The largest valid k (the smallest class's training pool) and that class's name."""
    pools = {
        name: training_pool(
            n,
            val_fraction=params.val_fraction,
            test_fraction=params.test_fraction,
            predefined=counts.predefined_test,
        )
        for name, n in counts.pools.items()
    }
    smallest = min(pools, key=lambda name: pools[name])
    return pools[smallest], smallest


def check_k_shot(params: PipelineParams, counts: ClassCounts, k_values: tuple[int, ...]) -> None:
    """Every k (``--k-shot``, or each of a sweep's ``--k-values``) must fit the smallest class."""
    if not counts.pools:
        return
    limit, name = largest_k(params, counts)
    flag = "--k-values" if isinstance(params, SweepParams) else "--k-shot"
    k = max(k_values)
    if limit < 1:
        raise ConfigError(
            f"--target {params.target}: class {name!r} has too few images for train/val/test; "
            "add images to it or leave it out with ?classes="
        )
    if k > limit:
        raise ConfigError(
            f"{flag} {k} is larger than the training pool of class {name!r} in {params.target} "
            f"({limit} images after val/test): use {flag} {limit} or less"
        )
