"""The ``checkpoint:`` source provider: a trunk from weights on disk or in S3, nothing pretrained.

``checkpoint:<path|s3://bucket/prefix>`` takes a warmstart checkpoint: a folder with ``meta.json``
and ``epoch-NNN.safetensors`` (``warmstart.models.checkpoint``), or a stage's prefix holding one
in ``ckpt/`` (what a version's ``checkpoint_uri`` tag names), or one ``epoch-NNN.safetensors``
beside its ``meta.json``. The architecture and input come from the meta; the weights are the best
epoch's (else the latest). The trunk is the module whose weights fit the backbone (``model.`` of
a supervised pretraining, ``encoder.`` of an autoencoder, the whole model of a fine-tuning).
The head beside that trunk (``<prefix>head.``: a supervised pretraining's source classes, a
fine-tuning's target classes) goes to the ranking as the source's classifier (LEEP, NCE).

``checkpoint:<file.safetensors>?arch=<torchvision model>`` takes a plain torchvision state dict
(``model.state_dict()`` saved with safetensors): backbone ``torchvision:<model>``, any input size
the model takes (the target's), keys and shapes checked against the architecture; its own
classifier layer (``fc``, ``classifier.N`` …) is the source's classifier.

Local checkpoints are checked in ``validate`` (before anything is ingested); S3 ones when
resolved. A warmstart stage's folder also holds ``learned.json``, the data its weights learned
from (pretraining data, the labelled target and split): the leakage guard checks it against the
run's validation and test images like a registered model's. A plain state dict says nothing of
its data and is not checked. The trunk is stored once per content hash under ``s3://<bucket>/sources/<sha256>/``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from warmstart import storage
from warmstart.contracts import DatasetRef, Job, SourceModel
from warmstart.data.spec import split_options
from warmstart.errors import ConfigError
from warmstart.models import CheckpointError, ModelError, get_backbone
from warmstart.models.backbones.torchvision import PREFIX as TORCHVISION
from warmstart.models.backbones.torchvision import backbone_state, classifier_state
from warmstart.models.checkpoint import FORMAT, META, meta_epoch, meta_file, weights_name
from warmstart.params import PipelineParams
from warmstart.stages.sources import (
    LEARNED_FILE,
    LearnedFrom,
    SourceProvider,
    read_learned,
    register_source_provider,
)
from warmstart.stages.sources_registered import (
    Geometry,
    check_backbone,
    check_geometry,
    check_target,
    existing_source,
)
from warmstart.stages.weights import Report, no_report

TRUNK = "backbone.safetensors"
HEAD = "head.safetensors"  # the checkpoint's own classifier, when it has one (LEEP and NCE)


def parse_checkpoint_spec(spec: str) -> tuple[str, str | None]:
    """(location, arch) of ``checkpoint:<path|s3://…>[?arch=<model>]``."""
    location, options = split_options(spec.removeprefix("checkpoint:"))
    unknown = sorted(set(options) - {"arch"})
    if not location.strip() or unknown:
        raise ConfigError(
            f"--source {spec}: write checkpoint:<folder, .safetensors file or s3://bucket/prefix>"
            f"[?arch=<torchvision model>]{' (unknown option ' + unknown[0] + ')' if unknown else ''}"
        )
    return location.strip(), options.get("arch") or None


def _join(location: str, rel: str) -> str:
    return f"{location.rstrip('/')}/{rel}" if rel else location


def read_bytes(location: str) -> bytes | None:
    """A local file's or S3 object's bytes; None when it does not exist."""
    if location.startswith("s3://"):
        target = storage.parse_s3_uri(location)
        return storage.get_bytes(target) if storage.exists(target) else None
    path = Path(location).expanduser()
    return path.read_bytes() if path.is_file() else None


def _meta(spec: str, folder: str) -> dict | None:
    raw = read_bytes(_join(folder, META))
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(
            f"--source {spec}: {_join(folder, META)} is not a {FORMAT} meta.json: point "
            "checkpoint: at a warmstart checkpoint folder"
        )
    return meta


def find_checkpoint(spec: str, location: str) -> tuple[dict, str]:
    """(meta, weights file) of the warmstart checkpoint at ``location``."""
    if location.endswith(".safetensors"):
        folder, _, file = location.rpartition("/")
        meta = _meta(spec, folder or ".")
        if meta is None:
            raise ConfigError(
                f"--source {spec}: {location} has no {META} beside it, so its architecture is "
                "unknown: add ?arch=<torchvision model> for a plain state dict"
            )
        return meta, _join(folder, file)
    for folder in (location, _join(location, "ckpt")):
        meta = _meta(spec, folder)
        if meta is not None:
            try:
                last = meta_file(meta, "weights", _join(folder, META))
                best = meta_epoch(meta, "best_epoch", folder) if meta.get("best_epoch") else None
            except CheckpointError as exc:
                raise ConfigError(f"--source {spec}: {exc}") from None
            name = weights_name(best) if best else last
            if read_bytes(_join(folder, name)) is None:
                name = last
            return meta, _join(folder, name)
    raise ConfigError(
        f"--source {spec}: no warmstart checkpoint at {location} (no {META} there or in ckpt/): "
        "check the path, or give a folder written by a warmstart training stage"
    )


def load_state(spec: str, file: str) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors (never unpickled); one line when missing or corrupt."""
    raw = read_bytes(file)
    if raw is None:
        raise ConfigError(f"--source {spec}: {file} does not exist: check the checkpoint path")
    try:
        return safetensors.torch.load(raw)
    except SafetensorError as exc:
        raise ConfigError(
            f"--source {spec}: {file} is not a safetensors file ({exc}): give the checkpoint's "
            "epoch-NNN.safetensors or its folder"
        ) from None


def trunk_state(
    spec: str, g: Geometry, weights: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The backbone's trunk out of a checkpoint's weights: the module prefix (none, ``model.``,
    ``encoder.`` …) whose tensors fit every trunk key and shape; ``ConfigError`` when none does."""
    return backbone_of(spec, g, weights)[0]


def backbone_of(
    spec: str, g: Geometry, weights: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``trunk_state``, and the head beside that trunk (``<prefix>head.weight``/``bias``, as
    ``head.`` keys; {} when the checkpoint has none: an autoencoder's encoder, a probe's trunk)."""
    model = get_backbone(g.backbone, in_channels=g.channels, num_classes=1, image_size=g.size)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("head.")}
    prefixes = ["", *sorted({k.split(".", 1)[0] + "." for k in weights if "." in k})]
    for prefix in prefixes:
        state = {k: weights.get(prefix + k) for k in own}
        if all(v is not None and tuple(v.shape) == own[k] for k, v in state.items()):
            head = {f"head.{n}": weights.get(f"{prefix}head.{n}") for n in ("weight", "bias")}
            found = all(v is not None for v in head.values())
            return {k: v for k, v in state.items() if v is not None}, (head if found else {})
    missing = sorted(k for k in own if k not in weights)
    bad = sorted(k for k in own if k in weights and tuple(weights[k].shape) != own[k])
    detail = f"missing {missing[:3]}" if missing else ""
    detail += "; ".join(f" {k}: {tuple(weights[k].shape)} vs {own[k]}" for k in bad[:2])
    raise ConfigError(
        f"--source {spec}: the checkpoint does not fit backbone {g.backbone!r} at "
        f"{g.channels}×{g.size[0]}×{g.size[1]} ({detail.strip()}): give a checkpoint of that "
        "backbone and input, or the right ?arch="
    )


def check_exists(spec: str, location: str) -> None:
    if not location.startswith("s3://") and not Path(location).expanduser().exists():
        raise ConfigError(
            f"--source {spec}: {location} does not exist: check the path (or use s3://bucket/…)"
        )


def read_plain(spec: str) -> tuple[str, dict[str, torch.Tensor], str]:
    """(backbone, trunk tensors, file) of ``…file.safetensors?arch=<torchvision model>``."""
    backbone, state, _, file = read_plain_with_head(spec)
    return backbone, state, file


def read_plain_with_head(spec: str) -> tuple[str, dict, dict, str]:
    """``read_plain`` and the state dict's own classifier (``classifier_state``; {}: none)."""
    location, arch = parse_checkpoint_spec(spec)
    model = str(arch).removeprefix(TORCHVISION)
    check_exists(spec, location)
    if not location.endswith(".safetensors"):
        raise ConfigError(
            f"--source {spec}: ?arch= takes one state dict file: give the .safetensors file"
        )
    state = load_state(spec, location)
    try:
        trunk = backbone_state(model, state)
        return TORCHVISION + model, trunk, classifier_state(model, state), location
    except ModelError as exc:
        raise ConfigError(f"--source {spec}: {exc}") from None


def read_trunk(spec: str) -> tuple[Geometry, dict[str, torch.Tensor], str]:
    """(geometry, trunk tensors, weights file) of a ``checkpoint:`` source, checked."""
    g, trunk, _, file = read_trunk_with_head(spec)
    return g, trunk, file


def read_trunk_with_head(spec: str) -> tuple[Geometry, dict, dict, str]:
    """``read_trunk`` and the head stored beside the trunk (``backbone_of``; {}: none)."""
    location, _ = parse_checkpoint_spec(spec)
    check_exists(spec, location)
    meta, file = find_checkpoint(spec, location)
    try:
        h, w = meta["image_size"]
        g = Geometry(str(meta["backbone"]), int(meta["in_channels"]), (int(h), int(w)))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(
            f"--source {spec}: {META} does not name backbone, in_channels and image_size: "
            "give a checkpoint written by warmstart's training stages"
        ) from None
    return g, *backbone_of(spec, g, load_state(spec, file)), file


def stage_folders(location: str) -> list[str]:
    """Where a warmstart stage's own files may be, for a ``checkpoint:`` location: the folder
    itself, and the stage folder above ``ckpt/`` (the location may be ``ckpt/`` or a file in it)."""
    folder = location.rpartition("/")[0] if location.endswith(".safetensors") else location
    folder = folder.rstrip("/")
    up = folder.rpartition("/")[0] if folder.rpartition("/")[2] == "ckpt" else None
    return [f for f in (folder, up) if f]


def learned_from_stage(location: str) -> list[LearnedFrom]:
    """What a warmstart stage's weights learned from (its ``learned.json``); [] for a checkpoint
    that does not say (a plain state dict, or a stage written before the record existed)."""
    for folder in stage_folders(location):
        raw = read_bytes(_join(folder, LEARNED_FILE))
        if raw is not None:
            return read_learned(raw)
    return []


def store_trunk(state: dict[str, torch.Tensor], name: str = TRUNK) -> tuple[str, str]:
    """(s3:// URI, sha256) of the trunk (or, ``name`` HEAD, its head) as safetensors, stored
    once per content hash."""
    blob = safetensors.torch.save({k: v.contiguous() for k, v in sorted(state.items())})
    digest = hashlib.sha256(blob).hexdigest()
    target = storage.uri("sources", digest, name)
    if not storage.exists(target):
        storage.put_bytes(target, blob)
    return str(target), digest


@register_source_provider("checkpoint")
class CheckpointProvider(SourceProvider):
    """``checkpoint:<path|s3://…>``: the trunk of a warmstart checkpoint."""

    def validate(self, params: PipelineParams) -> None:
        spec = params.source
        location, arch = parse_checkpoint_spec(spec)
        if location.startswith("s3://"):  # S3 is read when resolved (no service here)
            if arch is not None:
                check_backbone(spec, TORCHVISION + arch.removeprefix(TORCHVISION), params)
        elif arch is not None:
            check_backbone(spec, read_plain(spec)[0], params)
        else:
            check_geometry(spec, read_trunk(spec)[0], params)

    def learned_from(self, params: PipelineParams) -> list[LearnedFrom]:
        """A warmstart stage's record of its data (pretraining data, labelled target split)."""
        return learned_from_stage(parse_checkpoint_spec(params.source)[0])

    def resolve(
        self, label: str, dataset: DatasetRef | None, job: Job, report: Report = no_report
    ) -> SourceModel:
        spec, target = job.source.spec, job.target
        if parse_checkpoint_spec(spec)[1] is not None:  # a torchvision model takes the target's
            backbone, state, head, file = read_plain_with_head(spec)
            check_backbone(spec, backbone, job.params)
            g = Geometry(backbone, target.channels, (int(target.size[0]), int(target.size[1])))
        else:
            g, state, head, file = read_trunk_with_head(spec)
            check_target(spec, g, target, job.params)
        uri, digest = store_trunk(state)
        head_uri = store_trunk(head, HEAD)[0] if head else ""
        lineage = {
            "lineage.source_kind": "checkpoint",
            "lineage.checkpoint": file,
            "lineage.weights_sha256": digest,
            "lineage.note": f"continued from checkpoint `{file}` (trunk sha256 {digest[:12]}).",
        }
        return existing_source(label, self.name, g, uri, digest, lineage, head_uri)
