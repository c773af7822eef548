"""Sources that already exist as models: nothing is pretrained, the given trunk is reused.

- ``mlflow:models:/<name>@<alias>`` or ``mlflow:models:/<name>/<version>``: a version that
  warmstart registered (continual transfer: today's champion on task A starts task B). The
  alias is pinned to its version once, when the run validates its parameters: from then on every
  stage (leakage guard, resolve, lineage) reads ``mlflow:models:/<name>/<version>?alias=<alias>``,
  so an alias that moves during the run (another run promoted a model) changes nothing in it;
  ``?alias=`` only records which alias named the version. The weights are the
  ``model.safetensors`` of the stage that trained the version (its ``checkpoint_uri`` tag), checked
  against the version's ``weights_sha256`` tag before use. The architecture is the ``backbone``
  parameter of the version's training run; the input geometry its MLflow model's metadata (or
  the signature of a version logged before the image pyfunc).
- ``checkpoint:…``: see ``warmstart.stages.sources_checkpoint``.

The head is always replaced for the target's classes (the transfer modes load the trunk only);
the version's own head, over the earlier target's classes, is handed to the ranking
(``SourceModel.head_uri``: its LEEP and NCE).
Provenance keys ``lineage.*`` become tags of any version registered from the source, and
``lineage.note`` a line of its description, so the chain of versions can be followed in MLflow.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from warmstart import storage, tracking
from warmstart.contracts import DatasetRef, Job, SourceModel
from warmstart.data import load_source
from warmstart.errors import ConfigError
from warmstart.models import get_backbone
from warmstart.params import PipelineParams
from warmstart.stages.checks import parse_flag
from warmstart.stages.sources import LearnedFrom, SourceProvider, register_source_provider
from warmstart.stages.weights import Report, load_weights, no_report
from warmstart.tracking.client import client

_URI = re.compile(
    r"models:/(?P<name>[^/@?'\"]+)"
    r"(?:@(?P<alias>[^/@?'\"]+)|/(?P<version>\d+)(?:\?alias=(?P<pinned>[^/@?&'\"]+))?)"
)
LISTED = 12  # names shown when listing what exists


@dataclass(frozen=True)
class Geometry:
    """What a source's weights were trained on: architecture and input (channels, H, W)."""

    backbone: str
    channels: int
    size: tuple[int, int]


@dataclass(frozen=True)
class RegisteredVersion:
    """A registered model version pinned to its number, with what transfer needs from it."""

    spec: str  # what the user typed, e.g. mlflow:models:/warmstart-a@champion
    name: str
    version: str
    alias: str | None
    run_id: str
    experiment_id: str
    geometry: Geometry
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def pinned_spec(self) -> str:
        """The source spec that names this version whatever its alias does later."""
        alias = f"?alias={self.alias}" if self.alias else ""
        return f"mlflow:{self.uri}{alias}"


def parse_model_spec(spec: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) of ``mlflow:models:/<name>@<alias>``, ``…/<name>/<version>`` or
    the pinned form ``…/<name>/<version>?alias=<alias>`` (both set)."""
    m = _URI.fullmatch(spec.removeprefix("mlflow:").strip())
    if m is None:
        raise ConfigError(
            f"--source {spec}: not a registered model; write mlflow:models:/<name>@<alias> "
            "or mlflow:models:/<name>/<version>, e.g. mlflow:models:/warmstart-uci-digits@champion"
        )
    return m["name"], m["alias"] or m["pinned"], m["version"]


def _listed(items: list[str]) -> str:
    more = f" (+{len(items) - LISTED} more)" if len(items) > LISTED else ""
    return ", ".join(items[:LISTED]) + more if items else "none"


def _versions(name: str) -> dict[str, object]:
    """Version number → MLflow ModelVersion of one registered model ({}: not registered)."""
    with tracking.errors(f"search of the versions of {name!r}"):
        found = client().search_model_versions(filter_string=f"name = '{name}'")
    return {str(mv.version): mv for mv in sorted(found, key=lambda mv: int(mv.version))}


def _missing(spec: str, name: str, alias: str | None, version: str | None) -> ConfigError:
    """The one-line error for a model, alias or version that does not exist: what does."""
    versions = list(_versions(name))
    if not versions:
        with tracking.errors("search of registered models"):
            names = sorted(m.name for m in client().search_registered_models(max_results=100))
        return ConfigError(
            f"--source {spec}: no registered model {name!r} with versions; registered models: "
            f"{_listed(names)} (a pipeline run registers warmstart-<target>-… when its gate passes)"
        )
    if version is None:
        have = [f"@{a} (version {v})" for a, v in sorted(tracking.aliases(name).items())]
        return ConfigError(
            f"--source {spec}: {name} has no alias {alias!r}; its aliases: {_listed(have)}; "
            f"its versions: {_listed(versions)} (use mlflow:models:/{name}/<version>)"
        )
    return ConfigError(
        f"--source {spec}: {name} has no version {version}; its versions: {_listed(versions)}"
    )


def _pin(spec: str) -> tuple[str, str, str | None, object]:
    """(name, version, alias, ModelVersion): an alias read once and pinned to its version."""
    name, alias, version = parse_model_spec(spec)
    if version is None:
        version = tracking.aliases(name).get(alias)
    mv = _versions(name).get(version or "") if version else None
    if mv is None:
        raise _missing(spec, name, alias, version)
    return name, str(version), alias, mv


def _backbone(spec: str, mv, run) -> str:
    """The architecture: the version's ``backbone`` tag, else its training run's parameter."""
    found = (mv.tags or {}).get("backbone") or run.data.params.get("backbone")
    if not found:
        raise ConfigError(
            f"--source {spec}: version {mv.version} of {mv.name} does not name its backbone "
            f"(run {mv.run_id} has no `backbone` parameter): use a model registered by warmstart"
        )
    return str(found)


def lookup(spec: str) -> RegisteredVersion:
    """Resolve ``mlflow:models:/…`` to one version: architecture, input shape, run, tags.
    Reads MLflow only (no weights); ``ConfigError`` naming what exists when it does not."""
    name, version, alias, mv = _pin(spec)
    if not mv.run_id:
        raise ConfigError(
            f"--source {spec}: version {version} of {name} has no source run: use a model "
            "registered by warmstart (its run records the backbone)"
        )
    with tracking.errors(f"read of run {mv.run_id}"):
        run = client().get_run(mv.run_id)
    resolved = tracking.resolve_model(f"models:/{name}/{version}")
    channels, h, w = resolved.input_shape
    geometry = Geometry(_backbone(spec, mv, run), channels, (h, w))
    return RegisteredVersion(
        spec, name, version, alias, mv.run_id, run.info.experiment_id, geometry, resolved.tags
    )


def check_backbone(spec: str, backbone: str, params: PipelineParams) -> None:
    """The source's architecture must be the run's backbone (scratch and every arm use it)."""
    if backbone != params.backbone:
        raise ConfigError(
            f"--source {spec} is a {backbone!r} model but --backbone is "
            f"{params.backbone!r}: add --backbone {backbone}"
        )


def target_geometry(spec: str) -> tuple[int | None, tuple[int, int] | None]:
    """(channels, size) of a target spec where known without the object store: a builtin is
    built in memory, other kinds say what their ``?channels=``/``?size=`` options say."""
    target = parse_flag("--target", spec)
    if target.kind == "builtin":
        ds = load_source(target)
        return int(ds.channels), (int(ds.size[0]), int(ds.size[1]))
    return target.channels, (tuple(target.size) if target.size else None)


def check_geometry(spec: str, geometry: Geometry, params: PipelineParams) -> None:
    """Before ingestion: the backbone, and the target's input where its spec tells it."""
    check_backbone(spec, geometry.backbone, params)
    channels, size = target_geometry(params.target)
    if (size is not None and size != geometry.size) or (
        channels is not None and channels != geometry.channels
    ):
        raise ConfigError(_geometry_fix(spec, geometry, params.target))


def check_target(spec: str, geometry: Geometry, target: DatasetRef, params: PipelineParams) -> None:
    """The exact check, once the target is ingested (before any arm trains on the source)."""
    check_backbone(spec, geometry.backbone, params)
    if (target.channels, tuple(target.size)) != (geometry.channels, geometry.size):
        raise ConfigError(_geometry_fix(spec, geometry, params.target))


def _geometry_fix(spec: str, g: Geometry, target: str) -> str:
    h, w = g.size
    sep = "&" if "?" in target else "?"
    return (
        f"--source {spec} takes {g.channels}×{h}×{w} images but --target {target} is another "
        f"size or channel count: add {sep}size={h}x{w}&channels={g.channels} to --target"
    )


def trunk_note(version: RegisteredVersion) -> str:
    """The description line: the version and the run it came from, as links in the MLflow UI."""
    base = tracking.tracking_uri().rstrip("/")
    version_url = f"{base}/#/models/{version.name}/versions/{version.version}"
    run_url = f"{base}/#/experiments/{version.experiment_id}/runs/{version.run_id}"
    via = f" (alias @{version.alias} when resolved)" if version.alias else ""
    return (
        f"continued from [`{version.uri}`]({version_url}){via}, trained in MLflow run "
        f"[`{version.run_id}`]({run_url})."
    )


def lineage(version: RegisteredVersion) -> dict[str, str]:
    """Provenance keys copied onto the versions registered from this source."""
    out = {
        "lineage.source_kind": "mlflow",
        "lineage.source_model": version.name,
        "lineage.source_version": version.version,
        "lineage.source_model_uri": version.uri,
        "lineage.source_run_id": version.run_id,
        "lineage.source_experiment_id": version.experiment_id,
        "lineage.note": trunk_note(version),
    }
    if version.alias:
        out["lineage.source_alias"] = version.alias
    return out


def registered_weights(version: RegisteredVersion) -> tuple[str, str]:
    """(s3:// URI of the version's weights, their ``weights_sha256``), checked: the stored
    file must load into the architecture and hash to the version's tag."""
    weights_uri, digest, _ = checked_weights(version)
    return weights_uri, digest


def checked_weights(version: RegisteredVersion) -> tuple[str, str, bool]:
    """``registered_weights`` and whether the file holds the version's classifier (``head.``
    keys, over the classes of the target it was trained on)."""
    tags, spec = version.tags, version.spec
    checkpoint, digest = tags.get("checkpoint_uri"), tags.get("weights_sha256")
    if not checkpoint or not digest:
        raise ConfigError(
            f"--source {spec}: {version.uri} has no checkpoint_uri/weights_sha256 tags: use a "
            "version registered by a warmstart pipeline run"
        )
    result = storage.parse_s3_uri(checkpoint).child("result.json")
    if not storage.exists(result):
        raise ConfigError(
            f"--source {spec}: the weights of {version.uri} are gone from {checkpoint} (its "
            "stage was deleted): use another version, or retrain and register it"
        )
    weights_uri = json.loads(storage.get_bytes(result)).get("weights_uri")
    stage = str(storage.parse_s3_uri(checkpoint)).rstrip("/") + "/"
    inside = isinstance(weights_uri, str) and weights_uri.startswith(stage)
    if not inside or ".." in weights_uri[len(stage) :].split("/"):
        raise ConfigError(
            f"--source {spec}: {result} names weights_uri {str(weights_uri)[:80]!r}, outside its "
            "stage: the stage was altered; use another version, or retrain and register it"
        )
    state = load_weights(weights_uri)
    g = version.geometry
    head = state.get("head.weight")
    model = get_backbone(
        g.backbone,
        in_channels=g.channels,
        num_classes=int(head.shape[0]) if head is not None else 0,
        image_size=g.size,
    )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(
            f"--source {spec}: {weights_uri} does not fit {g.backbone!r} ({str(exc)[:200]}): "
            "the version's backbone parameter is wrong; use another version"
        ) from None
    if tracking.weights_sha256(model) != digest:
        raise ConfigError(
            f"--source {spec}: {weights_uri} differs from the registered weights of "
            f"{version.uri} (weights_sha256): the stage was overwritten; use another version"
        )
    return weights_uri, digest, head is not None


def existing_source(
    label: str,
    provider: str,
    g: Geometry,
    weights_uri: str,
    digest: str,
    provenance: dict,
    head_uri: str = "",
) -> SourceModel:
    """A source of weights that exist already: no stage record; its key is the weights' hash
    (the trunk's: ``head_uri``, its classifier where it has one, does not change it)."""
    return SourceModel(
        label=label,
        provider=provider,
        backbone=g.backbone,
        weights_uri=weights_uri,
        channels=g.channels,
        image_size=g.size,
        provenance={"weights_sha256": digest, "backbone": g.backbone, **provenance},
        head_uri=head_uri,
    )


@register_source_provider("mlflow")
class RegisteredModelProvider(SourceProvider):
    """``mlflow:models:/<name>@<alias>`` or ``…/<name>/<version>``: a registered version's trunk."""

    def validate(self, params: PipelineParams) -> None:
        parse_model_spec(params.source)
        tracking.check_server(timeout=5)  # one line at once when MLflow is down, not a minute

    def pin(self, params: PipelineParams) -> PipelineParams:
        """The version the alias names now, checked against the run's backbone and target."""
        version = lookup(params.source)
        check_geometry(params.source, version.geometry, params)
        return params.model_copy(update={"source": version.pinned_spec})

    def learned_from(self, params: PipelineParams) -> list[LearnedFrom]:
        """The version's pretraining data and its labelled target split (its tags)."""
        tags = lookup(params.source).tags
        seen = []
        if tags.get("source_dataset_hash"):
            seen.append(LearnedFrom("source model's pretraining data", tags["source_dataset_hash"]))
        if tags.get("target_dataset_hash"):
            split = tags.get("split_hash") or None
            seen.append(LearnedFrom("source model's labels", tags["target_dataset_hash"], split))
        return seen

    def resolve(
        self, label: str, dataset: DatasetRef | None, job: Job, report: Report = no_report
    ) -> SourceModel:
        version = lookup(job.source.spec)
        g = version.geometry
        check_target(version.spec, g, job.target, job.params)
        weights_uri, digest, has_head = checked_weights(version)
        provenance = {"source_dataset_hash": version.tags.get("target_dataset_hash", "")}
        head_uri = weights_uri if has_head else ""  # its head.* keys: the earlier target's
        return existing_source(
            label, self.name, g, weights_uri, digest, provenance | lineage(version), head_uri
        )
