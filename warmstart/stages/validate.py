"""Validation before anything is ingested or trained, in one place for the CLI, the flow's
``validate-params`` task and the Prefect form. Names (strategies, modes, backbone) are checked by
``PipelineParams`` itself; here: the dataset specs (parse, exist, options), ``k_shot`` against the
target's smallest class, the image size against the backbone, and the source provider's checks.
Every error is a ``ConfigError`` of one line naming the flag the user typed and the fix."""

from __future__ import annotations

from warmstart.errors import ConfigError
from warmstart.models import ModelError, get_backbone
from warmstart.params import PipelineParams
from warmstart.stages.checks import ClassCounts, class_counts, parse_flag, training_pool
from warmstart.stages.sources import provider_for


def validate(params: PipelineParams) -> PipelineParams:
    """Refuse bad input with one line (flag and fix) before anything is ingested; return the
    params with the source pinned by its provider (what every stage of the run reads)."""
    target = parse_flag("--target", params.target)
    provider = provider_for(params.source)
    source = parse_flag("--source", params.source) if provider.needs_dataset else None
    counts = class_counts("--target", target)
    size = target.size or (counts.size if counts else None)
    if size is not None:
        check_image_size(params.backbone, size, "--target", params.target)
    if source is not None and source.size is not None:
        check_image_size(params.backbone, source.size, "--source", params.source)
    if counts is not None:
        check_k_shot(params, counts)
    provider.validate(params)
    return provider.pin(params)


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


def check_k_shot(params: PipelineParams, counts: ClassCounts) -> None:
    """``--k-shot`` (or the largest of ``--k-values`` for a sweep) must fit the smallest class."""
    if not counts.pools:
        return
    limit, name = largest_k(params, counts)
    values = getattr(params, "k_values", None)
    flag, k = ("--k-values", max(values)) if values else ("--k-shot", params.k_shot)
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
