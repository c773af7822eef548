"""Published weights without network: a checked mirror in the object store, then the torch.hub
cache, then (only where allowed) a torchvision download.

``add`` checks a weights file before it is uploaded to ``s3://<bucket>/weights/…``: it is read
with ``weights_only=True`` (nothing is ever unpickled otherwise), its keys and shapes must fit the
architecture, and a file offered as a torchvision enum (``resnet18.IMAGENET1K_V1``) must match
the sha256 prefix in that enum's URL. A user's own file (``--as my-resnet18 --arch resnet18``) is
keyed by its own sha256. ``fetch`` reads weights back through torchvision's weights API.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import safetensors.torch
import torch
from torchvision.models._api import WeightsEnum

from warmstart import safepath, settings, storage
from warmstart.errors import ConfigError, StorageError
from warmstart.models import CheckpointError, ModelError
from warmstart.models.backbones import torchvision as tv

MIRROR = "weights"
META = "meta.json"
DOWNLOAD_ENV = "WARMSTART_ALLOW_DOWNLOAD"  # "1": torchvision may download missing weights
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class WeightsEntry:
    """One mirrored weights file (its ``meta.json``): what ``weights list`` shows."""

    name: str  # resnet18.IMAGENET1K_V1, or the user's own name
    arch: str  # torchvision model
    enum: str | None  # ResNet18_Weights.IMAGENET1K_V1 (None: a user's own weights)
    sha256: str
    size: int
    file_name: str  # the file's name in the mirror (an enum's: its URL's, as torch.hub caches it)
    uri: str


@dataclass(frozen=True)
class Fetched:
    """Weights ready for a source: the trunk state, its classifier and where they came from."""

    state: dict[str, torch.Tensor]  # the trunk (Backbone keys, no head)
    arch: str
    weights: str  # the enum (ResNet18_Weights.IMAGENET1K_V1) or the user's name
    sha256: str
    origin: str  # mirror | cache | download
    file_name: str
    head: dict[str, torch.Tensor] = field(default_factory=dict)  # head.weight/bias ({}: none)

    @classmethod
    def split(cls, state: dict[str, torch.Tensor], *about: str) -> Fetched:
        """From a state read `with_head`: the trunk and the `head.` keys apart."""
        head = {k: v for k, v in state.items() if k.startswith("head.")}
        trunk = {k: v for k, v in state.items() if k not in head}
        return cls(trunk, *about, head=head)


def allow_download() -> bool:
    return os.environ.get(DOWNLOAD_ENV, "") in ("1", "true", "yes")


def _prefix(*parts: str) -> storage.S3Uri:
    return storage.uri(MIRROR, *parts)


def enum_prefix(enum: WeightsEnum) -> storage.S3Uri:
    arch_enum = f"{type(enum).__name__}.{enum.name}"
    return _prefix("torchvision", arch_enum)


def user_prefix(name: str) -> storage.S3Uri:
    return _prefix("user", name)


def parse_name(as_name: str, arch: str | None) -> tuple[str, WeightsEnum | None]:
    """(architecture, enum) for ``--as``: ``<model>.<ENUM>`` is torchvision's; anything else is a
    user's name and needs ``--arch``."""
    model, dot, member = as_name.partition(".")
    try:
        if dot and model in tv.list_torchvision_models():
            if arch is not None and arch != model:
                raise ConfigError(f"--arch {arch}: {as_name} is {model}'s; drop --arch")
            return model, tv.weights_enum(model, member)
        if not _NAME.match(as_name):
            raise ConfigError(f"--as {as_name!r}: use letters, digits, '.', '_' or '-'")
        if arch is None:
            raise ConfigError(
                f"--as {as_name}: add --arch <torchvision model> for your own weights"
            )
        return tv.check_model_name(arch), None
    except ModelError as exc:
        raise ConfigError(f"--as {as_name}: {exc}") from None


def official_name(file: Path) -> str | None:
    """``<model>.<ENUM>`` whose URL has this file name (torchvision's own download), if any."""
    for model in tv.list_torchvision_models():
        for member in tv.get_model_weights(model):
            if Path(member.url).name == file.name:
                return f"{model}.{member.name}"
    return None


def read_state(file: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``/``.pt`` (``weights_only=True``) or ``.safetensors`` file."""
    try:
        if file.suffix == ".safetensors":
            state = safetensors.torch.load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the same advice
        raise ConfigError(
            f"{file}: not a weights-only state dict ({type(exc).__name__}: {str(exc)[:120]}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"{file}: holds {type(state).__name__}, not a state dict of tensors; "
            "save model.state_dict() itself"
        )
    return state


def check_file(file: Path, arch: str, enum: WeightsEnum | None) -> str:
    """The file's sha256 once it passed every check (fits ``arch``; an enum's hash prefix)."""
    if not file.is_file():
        raise ConfigError(f"{file}: no such file; give the path of a weights file")
    try:
        tv.backbone_state(arch, read_state(file))
    except CheckpointError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    digest = storage.file_digest(file)
    prefix = tv.url_hash_prefix(enum) if enum is not None else None
    if prefix and not digest.startswith(prefix):
        raise ConfigError(
            f"{file}: refused, its sha256 {digest[:12]}… does not match {enum!r} "
            f"({Path(enum.url).name}); add your own weights with --as NAME --arch {arch}"
        )
    return digest


def add(file: Path, as_name: str | None = None, arch: str | None = None) -> WeightsEntry:
    """Check ``file`` and upload it with its ``meta.json`` (nothing is uploaded if a check fails;
    a file already mirrored is not uploaded again)."""
    as_name = as_name or official_name(file)
    if as_name is None:
        raise ConfigError(
            f"{file}: not a torchvision file name; add --as <model>.<ENUM> "
            "(e.g. resnet18.IMAGENET1K_V1) or --as NAME --arch <model>"
        )
    model, enum = parse_name(as_name, arch)
    digest = check_file(file, model, enum)
    if enum is not None:
        prefix, file_name = enum_prefix(enum), Path(enum.url).name
        enum_name = f"{type(enum).__name__}.{enum.name}"
    else:
        prefix, file_name, enum_name = user_prefix(as_name), f"{digest}{file.suffix}", None
    target = prefix.child(file_name)
    entry = WeightsEntry(
        as_name, model, enum_name, digest, file.stat().st_size, file_name, str(target)
    )
    info = storage.head(target)
    if info is None or info.sha256 != digest:
        storage.put_file(target, file)
    storage.put_bytes(prefix.child(META), json.dumps(asdict(entry), indent=1).encode())
    return entry


def read_entry(meta: storage.S3Uri) -> WeightsEntry:
    """A mirror's ``meta.json``, checked: it is written by whoever holds the bucket keys, and its
    ``sha256`` and ``file_name`` become a local path (``download``)."""
    where = str(meta)
    try:
        data = json.loads(storage.get_bytes(meta))
        entry = WeightsEntry(**data)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{where}: not a weights meta.json; delete it and add the weights again "
            "(`warmstart weights add`)"
        ) from None
    safepath.hex_digest(entry.sha256, "sha256", where)
    safepath.file_name(entry.file_name, "file_name", where)
    target = storage.parse_s3_uri(entry.uri)
    if target != storage.S3Uri(meta.bucket, meta.key.rsplit("/", 1)[0]).child(entry.file_name):
        raise ConfigError(
            f"{where}: uri {entry.uri!r} is not {entry.file_name} beside it; delete it and add "
            "the weights again (`warmstart weights add`)"
        )
    return entry


def entries() -> list[WeightsEntry]:
    """Every mirrored weights file, by name."""
    out = []
    for info in storage.list_objects(_prefix()):
        if info.key.endswith("/" + META):
            out.append(read_entry(storage.uri(info.key)))
    return sorted(out, key=lambda e: e.name)


def find_user(arch: str, name: str) -> WeightsEntry | None:
    """A user's mirrored weights ``name`` for ``arch`` (None when not mirrored)."""
    meta = user_prefix(name).child(META)
    if not storage.exists(meta):
        return None
    entry = read_entry(meta)
    if entry.arch != arch:
        raise ConfigError(f"weights {name!r} are {entry.arch}'s, not {arch}'s: use {entry.arch}")
    return entry


def local_dir(entry: WeightsEntry) -> Path:
    """Where a mirrored file is kept on this machine (per sha256, beside warmstart's state)."""
    root = settings.state_dir() / "weights"
    return safepath.inside(root, entry.sha256, what="sha256", where=f"weights {entry.name!r}")


def download(entry: WeightsEntry) -> Path:
    """The mirrored file on local disk (downloaded once, its sha256 checked)."""
    path = safepath.inside(
        local_dir(entry), entry.file_name, what="file_name", where=f"weights {entry.name!r}"
    )
    if path.exists() and storage.file_digest(path) == entry.sha256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    storage.download_file(storage.parse_s3_uri(entry.uri), part)
    if storage.file_digest(part) != entry.sha256:
        part.unlink()
        raise ConfigError(f"{entry.uri}: content differs from its sha256; add it again")
    part.replace(path)
    return path


def mirrored_enum(enum: WeightsEnum) -> WeightsEntry | None:
    meta = enum_prefix(enum).child(META)
    if not storage.exists(meta):
        return None
    entry = read_entry(meta)
    if entry.file_name != Path(enum.url).name:
        raise ConfigError(
            f"{meta}: file_name {entry.file_name!r} is not {Path(enum.url).name} of {enum!r}; "
            f"delete it and add the weights again (`warmstart weights add`)"
        )
    return entry


def missing_advice(model: str, enum: WeightsEnum) -> str:
    """One line: the exact file and how to make it available offline."""
    file_name, cached = Path(enum.url).name, tv.hub_cache_file(enum)
    return (
        f"weights {enum!r} are not available offline: get {file_name} ({enum.url}) and run "
        f"`warmstart weights add {file_name} --as {model}.{enum.name}` (or copy it to {cached})"
    )


def fetch(model: str, weights: str | None = None) -> Fetched:
    """Trunk weights of ``torchvision:<model>``: the mirror, then the torch.hub cache, then a
    torchvision download (only with WARMSTART_ALLOW_DOWNLOAD=1). ``weights``: an enum of the
    model (default DEFAULT) or a name added with ``warmstart weights add --as NAME``."""
    enum = resolve_enum(model, weights)
    if enum is None:
        entry = find_user(model, str(weights))
        assert entry is not None  # resolve_enum refused names that are not mirrored
        path = download(entry)
        state = tv.file_state_dict(model, path, with_head=True)
        return Fetched.split(state, model, entry.name, entry.sha256, "mirror", path.name)
    label = f"{type(enum).__name__}.{enum.name}"
    entry = mirrored_enum(enum)
    if entry is not None:
        path = download(entry)
        state = tv.torchvision_state_dict(model, enum, model_dir=path.parent, with_head=True)
        return Fetched.split(state, model, label, entry.sha256, "mirror", path.name)
    cached = tv.hub_cache_file(enum)
    origin = "cache" if cached.exists() else "download"
    if origin == "download" and not allow_download():
        raise ConfigError(missing_advice(model, enum))
    state = tv.torchvision_state_dict(model, enum, allow_download=True, with_head=True)
    return Fetched.split(state, model, label, storage.file_digest(cached), origin, cached.name)


def resolve_enum(model: str, weights: str | None) -> WeightsEnum | None:
    """The model's enum for ``weights``; None for a user's mirrored name; ConfigError otherwise."""
    try:
        return tv.weights_enum(model, weights)
    except ModelError as exc:
        if weights and _NAME.match(weights) and _user_exists(model, weights):
            return None
        raise ConfigError(
            f"{exc} (or a name added with `warmstart weights add FILE --as NAME --arch {model}`)"
        ) from None


def _user_exists(model: str, name: str) -> bool:
    try:
        return find_user(model, name) is not None
    except StorageError:  # the mirror unreachable: the name is unknown here
        return False


def available(model: str, weights: str | None = None) -> str:
    """Where the weights would come from (mirror | cache | download), checked before any work;
    ConfigError with the fix when nowhere."""
    enum = resolve_enum(model, weights)
    if enum is None:
        return "mirror"
    if tv.hub_cache_file(enum).exists():
        return "cache"
    try:
        if mirrored_enum(enum) is not None:
            return "mirror"
    except StorageError as exc:
        if not allow_download():
            raise ConfigError(f"{missing_advice(model, enum)}; mirror unreachable: {exc}") from None
    if allow_download():
        return "download"
    raise ConfigError(missing_advice(model, enum))


def clear_local(entry: WeightsEntry) -> None:
    """Forget the local copy of a mirrored file (tests; a corrupted download)."""
    shutil.rmtree(local_dir(entry), ignore_errors=True)
