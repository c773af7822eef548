"""Validation before anything is ingested or trained. Names are checked against the registries by
``PipelineParams`` itself; what depends on the source kind is the source provider's check."""

from __future__ import annotations

from warmstart.params import PipelineParams
from warmstart.stages.sources import provider_for


def validate(params: PipelineParams) -> None:
    """The source provider's own checks (one line naming the fix), before any work starts."""
    provider_for(params.source).validate(params)
