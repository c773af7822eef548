"""`torchvision:<model>`: any classification model of `torchvision.models` as a Backbone.

The model is built with `torchvision.models.get_model(name, weights=None)` (random init; weights
are loaded separately, see `torchvision_state_dict`), its final classifier layer is replaced by
the Backbone's swappable `head`, and the weights' preprocessing (per-channel mean/std) runs inside
the module, timm style: inputs stay float N×C×H×W in [0, 1]; a grey image is repeated to RGB.
Freezable stages carry torchvision's own module names (`layer3`, `features.4`, ...).
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torchvision
from torch import nn
from torchvision.models import get_model, get_model_weights, list_models
from torchvision.models._api import WeightsEnum

from ..backbones.base import Backbone
from ..errors import CheckpointError, ModelError, UnknownNameError
from ..registry import BACKBONES

PREFIX = "torchvision:"
# Containers whose children are the trunk's stages (torchvision's names, e.g. `features.4`).
EXPANDED = ("features", "layers", "blocks", "trunk_output", "encoder.layers")
# Auxiliary classifiers: off in the backbone (training only); their weights are dropped on load.
AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")
BUILD_KWARGS: dict[str, dict[str, Any]] = {
    # As the builders set them when weights are given: the trunk sees what it was trained on.
    "googlenet": {"aux_logits": False, "transform_input": True, "init_weights": True},
    "inception_v3": {"aux_logits": False, "transform_input": True, "init_weights": True},
}
HASH_REGEX = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's: the sha256 prefix in a file name
SMALLER_SIZES = (32, 64, 96, 128, 160)  # square sizes tried for the "train faster" advice


def list_torchvision_models() -> list[str]:
    """Classification models torchvision lists (`list_models(module=torchvision.models)`)."""
    return list_models(module=torchvision.models)


def check_model_name(model: str) -> str:
    """`model` if torchvision lists it; ModelError naming the closest names otherwise."""
    names = list_torchvision_models()
    if model not in names:
        close = difflib.get_close_matches(model, names, n=3, cutoff=0.5)
        err = UnknownNameError("torchvision model", model, close or names)
        hint = f"closest: {', '.join(close)}" if close else "not a torchvision classification model"
        err.args = (
            f"unknown torchvision model {model!r} ({hint}); torchvision.models.list_models() lists all",
        )
        raise err
    return model


def weights_enum(model: str, weights: str | WeightsEnum | None = None) -> WeightsEnum:
    """The weights enum member `weights` of `model` (None or "DEFAULT": the model's DEFAULT);
    ModelError listing the model's enums when it is not one of them."""
    enum_cls = get_model_weights(check_model_name(model))
    if isinstance(weights, WeightsEnum):
        if not isinstance(weights, enum_cls):
            raise ModelError(
                f"weights {weights!r} are not {model}'s: use one of {_members(enum_cls)}"
            )
        return weights
    name = (weights or "DEFAULT").split(".")[-1]
    try:
        return enum_cls[name]
    except KeyError:
        raise ModelError(
            f"weights {weights!r} are not {model}'s: use one of {_members(enum_cls)}"
        ) from None


def _members(enum_cls: type[WeightsEnum]) -> str:
    return ", ".join(dict.fromkeys(["DEFAULT", *enum_cls.__members__]))


def build_net(model: str) -> tuple[nn.Module, int]:
    """torchvision's model, random init, its final classifier replaced by identity; and the
    width of the features that layer took (the head's input)."""
    net = get_model(check_model_name(model), weights=None, **BUILD_KWARGS.get(model, {}))
    path, layer = _classifier(net)
    net.classifier_path = path  # type: ignore[assignment]  (the dropped keys' prefix)
    parent_name, _, attr = path.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    if isinstance(layer, nn.Linear):
        setattr(parent, attr, nn.Identity())
        return net, int(layer.in_features)
    # squeezenet: a 1×1 conv classifier over pooled maps; keep the pool, drop the conv.
    setattr(parent, attr, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    return net, int(layer.in_channels)


def _classifier(net: nn.Module) -> tuple[str, nn.Module]:
    """The last layer that outputs the 1,000 ImageNet classes (fc, classifier.N, heads.head...)."""
    found = [
        (n, m)
        for n, m in net.named_modules()
        if (isinstance(m, nn.Linear) and m.out_features == 1000)
        or (isinstance(m, nn.Conv2d) and m.out_channels == 1000)
    ]
    if not found:
        raise ModelError(f"torchvision model {type(net).__name__}: no classifier layer found")
    name, layer = found[-1]
    if isinstance(layer, nn.Conv2d):  # the squeezenet classifier: replace the whole Sequential
        return name.rpartition(".")[0], layer
    return name, layer


def shape_net(model: str) -> tuple[nn.Module, int]:
    """`build_net` on the meta device (shapes only, no memory, fast); on CPU for the few builders
    that initialise weights in place."""
    try:
        with torch.device("meta"):
            return build_net(model)
    except (NotImplementedError, RuntimeError):
        return build_net(model)


def stage_names_of(net: nn.Module) -> list[str]:
    """The trunk's stages in forward order: top-level children holding parameters, with the
    containers in EXPANDED split into their children (torchvision's dotted names)."""
    names: list[str] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for child, sub in module.named_children():
            full = f"{prefix}{child}"
            if full in EXPANDED:
                visit(f"{full}.", sub)
            elif full == "encoder":
                visit("encoder.", sub)
            elif any(True for _ in sub.parameters()):
                names.append(full)

    visit("", net)
    return names


class TorchvisionBackbone(Backbone):
    """A torchvision classification model (`net`) with the Backbone contract; subclasses made by
    `torchvision_backbone_class` fix `model_name`, `stage_names` and the weights' preprocessing."""

    model_name: ClassVar[str] = ""
    mean: ClassVar[tuple[float, float, float]] = (0.485, 0.456, 0.406)
    std: ClassVar[tuple[float, float, float]] = (0.229, 0.224, 0.225)
    native_size: ClassVar[tuple[int, int]] = (224, 224)  # the DEFAULT weights' crop size
    num_features_: ClassVar[int] = 0

    def __init__(self, *, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        check_input_size(self.model_name, (int(image_size[0]), int(image_size[1])))
        net, width = build_net(self.model_name)
        super().__init__(
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=image_size,
            num_features=width,
        )
        self.net = net
        # Not persistent: fixed by the architecture's weights, so not part of any state dict.
        self.register_buffer("pixel_mean", torch.tensor(self.mean).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(self.std).view(1, 3, 1, 1), False)

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(n, self.net.get_submodule(n)) for n in self.stage_names]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels to the weights' input scale; grey repeated to three channels."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.pixel_mean) / self.pixel_std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalise(x))

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features as a 1×1 map (torchvision models pool inside their forward)."""
        return self.forward_features(x)[:, :, None, None]


@functools.cache
def torchvision_backbone_class(model: str) -> type[TorchvisionBackbone]:
    """The Backbone class of torchvision's `model` (cached; the registry's `torchvision:` family)."""
    transforms = weights_enum(model).transforms()
    net, width = shape_net(model)
    attrs = {
        "model_name": model,
        "stage_names": stage_names_of(net),
        "mean": tuple(transforms.mean),
        "std": tuple(transforms.std),
        "native_size": (transforms.crop_size[0], transforms.crop_size[0]),
        "num_features_": width,
        "__doc__": f"torchvision's {model} as a Backbone (head replaced, stages named).",
    }
    cls = type(f"Torchvision_{model}", (TorchvisionBackbone,), attrs)
    cls.name = PREFIX + model
    return cls


@functools.cache
def check_input_size(model: str, image_size: tuple[int, int]) -> None:
    """ModelError with the fix when `model` cannot take images of `image_size` (a shape-only
    forward on the meta device: nothing is computed)."""
    cls = torchvision_backbone_class(model)
    h, w = int(image_size[0]), int(image_size[1])
    try:
        with torch.device("meta"):
            net, _ = build_net(model)
            net.eval()(torch.empty(2, 3, h, w))
    except (NotImplementedError, RuntimeError, AssertionError, ValueError) as exc:
        if "meta" in str(exc).lower() and "copy" in str(exc).lower():
            return  # a builder that cannot run on meta: training reports it instead
        nh, nw = cls.native_size
        raise ModelError(
            f"images of {h}x{w} px do not fit {PREFIX}{model} (native {nh}x{nw} px); "
            f"resize them with ?size={nh}x{nw}"
        ) from None


@dataclass(frozen=True)
class InputPreset:
    """The input the weights were trained and evaluated on (their ``transforms()``): resize the
    shorter side to ``resize``, centre-crop ``crop`` x ``crop``."""

    weights: str  # the enum the sizes come from, e.g. ResNet18_Weights.IMAGENET1K_V1
    resize: int
    crop: int
    smallest: int | None  # the smallest of SMALLER_SIZES below `crop` the model takes, if any
    own: bool = False  # the weights named are a user's own: the sizes are the DEFAULT enum's


@functools.cache
def input_preset(model: str, weights: str | None = None) -> InputPreset:
    """``model``'s input sizes from the weights enum ``weights`` (None, or a user's own weights'
    name: the model's DEFAULT, whose architecture they share)."""
    check_model_name(model)
    own = False
    try:
        enum = weights_enum(model, weights)
    except ModelError:  # not an enum: a name given with `warmstart weights add --as`
        enum, own = weights_enum(model), True
    transforms = enum.transforms()
    crop = int(transforms.crop_size[0])
    smallest = next((s for s in SMALLER_SIZES if s < crop and _fits(model, s)), None)
    return InputPreset(
        f"{type(enum).__name__}.{enum.name}", int(transforms.resize_size[0]), crop, smallest, own
    )


def _fits(model: str, size: int) -> bool:
    try:
        check_input_size(model, (size, size))
    except ModelError:
        return False
    return True


def backbone_state(model: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision state dict of `model` (as `weights.get_state_dict()` returns it) as the
    Backbone's trunk state (`net.` keys; classifier and auxiliary heads dropped). CheckpointError
    naming the keys when it does not fit the architecture (foreign keys, wrong shapes)."""
    net, _ = shape_net(model)
    own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    dropped = (f"{net.classifier_path}.", *AUX_PREFIXES)
    theirs = {k: v for k, v in state.items() if not k.startswith(dropped)}
    missing = sorted(set(own) - set(theirs))
    extra = sorted(set(theirs) - set(own))
    bad = sorted(k for k in own.keys() & theirs.keys() if tuple(theirs[k].shape) != own[k])
    if missing or extra or bad:
        parts = [
            f"missing {missing[:3]}" if missing else "",
            f"unexpected {extra[:3]}" if extra else "",
        ]
        parts += [f"{k}: {tuple(theirs[k].shape)} vs {own[k]}" for k in bad[:3]]
        raise CheckpointError(
            f"weights do not fit {PREFIX}{model} ({'; '.join(p for p in parts if p)}): "
            f"use a {model} state dict from torchvision"
        )
    return {f"net.{k}": v for k, v in theirs.items()}


def classifier_state(model: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights' own classifier (ImageNet's 1,000 classes) as the Backbone's head keys
    (`head.weight`, `head.bias`) when it is one linear layer on the trunk's pooled features (fc,
    classifier.N, heads.head…); {} when it is not (squeezenet's conv over the feature maps) or
    the state dict lacks it. LEEP and NCE read it; the arms replace it."""
    net, width = shape_net(model)
    path = net.classifier_path
    weight, bias = state.get(f"{path}.weight"), state.get(f"{path}.bias")
    if weight is None or bias is None or weight.ndim != 2 or weight.shape[1] != width:
        return {}
    return {"head.weight": weight, "head.bias": bias}


def hub_cache_file(weights: WeightsEnum) -> Path:
    """Where torch.hub keeps (and `get_state_dict` reads) `weights`: TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def url_hash_prefix(weights: WeightsEnum) -> str | None:
    """The sha256 prefix in the weights' file name (torch.hub checks it on download only)."""
    match = HASH_REGEX.search(Path(weights.url).name)
    return match.group(1) if match else None


def torchvision_state_dict(
    model: str,
    weights: str | WeightsEnum | None = None,
    *,
    model_dir: Path | None = None,
    allow_download: bool = False,
    with_head: bool = False,
) -> dict[str, torch.Tensor]:
    """`model`'s trunk state (Backbone keys) from its weights `weights` (default: DEFAULT), read
    through torchvision's own API: `weights.get_state_dict(weights_only=True)` from the torch.hub
    cache, or from `model_dir` holding the file under the same name. Without `allow_download`,
    a missing file is a CheckpointError naming the path it should be at (nothing is fetched).
    `with_head`: the classifier too, as `head.` keys (`classifier_state`), where it has one."""
    enum = weights_enum(model, weights)
    where = model_dir if model_dir is not None else hub_cache_file(enum).parent
    if not (where / Path(enum.url).name).exists() and not allow_download:
        raise CheckpointError(f"{enum!r}: {where / Path(enum.url).name} is missing")
    state = enum.get_state_dict(
        model_dir=str(where), progress=False, check_hash=True, weights_only=True, map_location="cpu"
    )
    head = classifier_state(model, state) if with_head else {}
    return backbone_state(model, state) | head


def file_state_dict(model: str, file: Path, with_head: bool = False) -> dict[str, torch.Tensor]:
    """`model`'s trunk state from a weights file of one's own, read by the torch.hub loader
    (`weights_only=True`), like a cached download (`with_head`: its classifier too)."""
    state = torch.hub.load_state_dict_from_url(
        file.resolve().as_uri(),
        model_dir=str(file.parent),
        file_name=file.name,
        map_location="cpu",
        weights_only=True,
    )
    head = classifier_state(model, state) if with_head else {}
    return backbone_state(model, state) | head


BACKBONES.register_family(PREFIX, torchvision_backbone_class)
