"""The ``torchvision`` source provider: ``torchvision:<model>[?weights=<ENUM>]``.

Any classification model ``torchvision.models.list_models(module=torchvision.models)`` lists,
with the weights enum ``ENUM`` (default: the model's ``DEFAULT``) or a name added with
``warmstart weights add --as NAME --arch <model>``. Nothing is pretrained: the weights come from
the mirror, the torch.hub cache or (where allowed) a torchvision download, through torchvision's
weights API, and every arm and scratch use the backbone ``torchvision:<model>`` (the parameters
set it from the source). The weights' mean/std normalise inside the model; a grey target is
repeated to three channels. Provenance ``lineage.*`` keys become the registered version's tags.
The weights' ImageNet classifier, where it is one linear layer on the pooled features, is stored
beside the trunk (``SourceModel.head_uri``): the ranking's LEEP and NCE read it; arms replace it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from tempfile import TemporaryDirectory

from warmstart import storage, weights
from warmstart.contracts import DatasetRef, Job, SourceModel
from warmstart.data.spec import parse_spec, split_options
from warmstart.errors import ConfigError, WarmstartError
from warmstart.models import ModelError
from warmstart.models.backbones.torchvision import (
    PREFIX,
    check_input_size,
    check_model_name,
    input_preset,
)
from warmstart.params import PipelineParams
from warmstart.stages.sources import SourceProvider, register_source_provider
from warmstart.stages.weights import Report, no_report, save_state

KIND = "torchvision"
TORCHVISION = KIND + ":"
log = logging.getLogger(__name__)
TRUNKS = "trunks"  # weights/trunks/torchvision-<model>-<sha256>.safetensors: what arms load


def parse_source(spec: str) -> tuple[str, str | None]:
    """(model, weights) of ``torchvision:<model>[?weights=<ENUM or name>]``."""
    model, options = split_options(spec[len(PREFIX) :])
    unknown = sorted(set(options) - {"weights"})
    if unknown or not model:
        raise ConfigError(
            f"--source {spec}: write torchvision:<model>[?weights=<ENUM>]"
            + (f" (unknown option {unknown[0]!r})" if unknown else "")
        )
    try:
        check_model_name(model)
    except ModelError as exc:
        raise ConfigError(f"--source {spec}: {exc}") from None
    return model, options.get("weights") or None


def check_size(spec: str, model: str, size: tuple[int, int]) -> None:
    """The target's image size against the model (before anything is trained)."""
    try:
        check_input_size(model, (int(size[0]), int(size[1])))
    except ModelError as exc:
        raise ConfigError(f"--target: {exc} (source {spec})") from None


def trunk_uri(model: str, sha256: str, part: str = "") -> storage.S3Uri:
    """Where the trunk (``part`` "") or its ImageNet classifier (``part`` "head") is stored."""
    name = "-".join(p for p in (KIND, model, sha256, part) if p)
    return storage.uri(weights.MIRROR, TRUNKS, f"{name}.safetensors")


def stored(uri: storage.S3Uri, state: dict) -> str:
    """``uri`` holding ``state`` as safetensors (written once: its name holds the hash)."""
    if not storage.exists(uri):
        with TemporaryDirectory() as tmp:
            path = Path(tmp) / "state.safetensors"
            save_state(path, state)
            storage.put_file(uri, path)
    return str(uri)


def lineage(fetched: weights.Fetched) -> dict[str, str]:
    """Provenance keys copied onto the versions registered from this source."""
    return {
        "lineage.source_kind": KIND,
        "lineage.source_model": fetched.arch,
        "lineage.weights": fetched.weights,
        "lineage.weights_sha256": fetched.sha256,
        "lineage.weights_file": fetched.file_name,
        "lineage.weights_origin": fetched.origin,
        "lineage.note": (
            f"transferred from torchvision `{fetched.arch}` weights `{fetched.weights}` "
            f"(`{fetched.file_name}`, sha256 {fetched.sha256[:12]}, from the {fetched.origin})."
        ),
    }


def native_size_target(source: str, target: str) -> str:
    """``target`` with the input of the ``torchvision:`` source's weights when it names no
    ``size=``: their transforms' centre crop and size (``?size=224x224&crop=center:0.875`` for
    resize 256, crop 224; a ``crop=`` of the user's own is kept), and a one-line notice saying so
    and how to pick a smaller size; any other target unchanged."""
    try:
        spec = parse_spec(target)
    except WarmstartError:
        return target  # validate() refuses it in one line with the fix
    if spec.size is not None:
        return target
    model, options = split_options(source.removeprefix(TORCHVISION))
    preset = input_preset(model, options.get("weights") or None)
    crop, small = preset.crop, preset.smallest
    faster = (
        f"add ?size={max(small, 64)}x{max(small, 64)} to --target ({small} px and up fit {model})"
        if small
        else f"{model} takes only {crop}x{crop}"
    )
    weights = f"{model}'s DEFAULT weights {preset.weights}" if preset.own else preset.weights
    centre = f"&crop=center:{crop / preset.resize:g}" if spec.crop is None else ""
    log.warning(
        "--target %s: no size= given, so images get the input of %s: its transforms' shorter "
        "side %d px, centre crop %dx%d px. On a CPU that trains slowly: %s.",
        target, weights, preset.resize, crop, crop, faster,
    )  # fmt: skip
    return f"{target}{'&' if '?' in target else '?'}size={crop}x{crop}{centre}"


@register_source_provider(KIND)
class TorchvisionProvider(SourceProvider):
    """Published weights of a torchvision model: one source, arms ``torchvision/<mode>``."""

    def target_spec(self, params: PipelineParams) -> str:
        return native_size_target(params.source, params.target)

    def validate(self, params: PipelineParams) -> None:
        model, name = parse_source(params.source)
        try:
            weights.available(model, name)
        except ConfigError as exc:
            raise ConfigError(f"--source {params.source}: {exc}") from None

    def resolve(
        self, label: str, dataset: DatasetRef | None, job: Job, report: Report = no_report
    ) -> SourceModel:
        spec, target = job.source.spec, job.target
        model, name = parse_source(spec)
        check_size(spec, model, target.size)
        try:
            fetched = weights.fetch(model, name)
        except ConfigError as exc:
            raise ConfigError(f"--source {spec}: {exc}") from None
        uri = stored(trunk_uri(model, fetched.sha256), fetched.state)
        head = fetched.head and stored(trunk_uri(model, fetched.sha256, "head"), fetched.head)
        return SourceModel(
            label=label,
            provider=self.name,
            backbone=PREFIX + model,
            weights_uri=uri,
            channels=target.channels,
            image_size=(int(target.size[0]), int(target.size[1])),
            provenance={"weights_sha256": fetched.sha256, "backbone": PREFIX + model}
            | lineage(fetched),
            head_uri=head or "",
        )
