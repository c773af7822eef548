"""Source spec strings: ``kind:location?opt=value&...``, parsed into a typed, frozen SourceSpec.

One spec string names a dataset everywhere (CLI, flow parameters, MLflow params), e.g.
``builtin:mnist-5k?size=8x8&classes=0-4``, ``cifar10:/data/cifar-10-python.tar.gz``,
``imagefolder:s3://bucket/pets?size=32x32&channels=3``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import quote, unquote

from warmstart.errors import DataError

KINDS = ("builtin", "cifar10", "imagefolder")
OPTIONS = (
    "size",
    "channels",
    "classes",
    "n",
    "num_classes",
    "seed",
    "crop",
    "skip_corrupt",
    "follow_symlinks",
)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source: what to read (kind, location) and the explicit conversions to apply."""

    kind: str  # builtin | cifar10 | imagefolder
    location: str  # builtin name, local path, or s3://bucket/prefix
    size: tuple[int, int] | None = None  # (H, W) after conversion
    channels: int | None = None  # 1 or 3
    classes: tuple[str, ...] | None = None  # selection tokens, in the new label order
    n: int | None = None  # sample count (builtin:shapes / builtin:noise)
    num_classes: int | None = None  # class count (builtin:shapes / builtin:noise)
    seed: int | None = None  # generator seed (overrides load_source's seed)
    crop: str | None = None  # "content" (square box of the non-background) or "center:<keep>"
    skip_corrupt: bool = False  # skip undecodable images (and count them) instead of failing
    follow_symlinks: bool = False  # imagefolder: read links that lead outside the folder

    @property
    def is_s3(self) -> bool:
        return self.location.startswith("s3://")

    def options(self) -> dict[str, object]:
        """The options that were set, JSON-able, in a fixed order."""
        out: dict[str, object] = {}
        if self.size is not None:
            out["size"] = f"{self.size[0]}x{self.size[1]}"
        if self.channels is not None:
            out["channels"] = self.channels
        if self.classes is not None:
            out["classes"] = ",".join(self.classes)
        for key in ("n", "num_classes", "seed", "crop"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in ("skip_corrupt", "follow_symlinks"):
            if getattr(self, key):
                out[key] = "true"
        return out

    def canonical(self) -> str:
        """The spec string in canonical form (fixed option order), parseable by parse_spec."""
        query = "&".join(f"{k}={quote(str(v), safe=',-x')}" for k, v in self.options().items())
        return f"{self.kind}:{self.location}" + (f"?{query}" if query else "")

    def __str__(self) -> str:
        return self.canonical()

    def with_options(self, **changes: object) -> SourceSpec:
        return replace(self, **changes)


def _fail(spec: str, what: str, fix: str) -> DataError:
    return DataError(f"source spec {spec!r}: {what}; {fix}")


def _positive_int(spec: str, key: str, value: str) -> int:
    try:
        out = int(value)
    except ValueError:
        raise _fail(spec, f"{key}={value!r} is not an integer", f"write {key}=<int>") from None
    if out <= 0:
        raise _fail(spec, f"{key}={value} must be positive", f"write {key}=<int greater than 0>")
    return out


def _parse_size(spec: str, value: str) -> tuple[int, int]:
    parts = value.lower().split("x")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise _fail(spec, f"size={value!r} is not HxW", "write size=32x32 (height x width)")
    return int(parts[0]), int(parts[1])


def _parse_option(spec: str, key: str, value: str) -> object:
    """The typed value of one known option; a malformed value raises DataError with the fix."""
    if key == "size":
        return _parse_size(spec, value)
    if key == "channels":
        if value not in ("1", "3"):
            raise _fail(spec, f"channels={value!r}", "write channels=1 (gray) or channels=3 (RGB)")
        return int(value)
    if key == "classes":
        tokens = tuple(t.strip() for t in value.split(","))
        if any(not t for t in tokens):
            raise _fail(
                spec,
                f"classes={value!r} has an empty entry",
                "write classes=0-4 or classes=cat,dog",
            )
        return tokens
    if key in ("n", "num_classes"):
        return _positive_int(spec, key, value)
    if key == "seed":
        try:
            return int(value)
        except ValueError:
            raise _fail(spec, f"seed={value!r} is not an integer", "write seed=<int>") from None
    if key == "crop":
        return _crop(spec, value.lower())
    if value.lower() not in _TRUE + _FALSE:  # skip_corrupt, follow_symlinks
        raise _fail(spec, f"{key}={value!r}", f"write {key}=true or false")
    return value.lower() in _TRUE


def _crop(spec: str, value: str) -> str:
    """``content``, or ``center:<keep>`` with 0 < keep <= 1 (e.g. ``center:0.875``)."""
    if value == "content":
        return value
    kind, _, keep = value.partition(":")
    try:
        fraction = float(keep)
    except ValueError:
        fraction = -1.0
    if kind != "center" or not 0.0 < fraction <= 1.0:
        raise _fail(
            spec,
            f"crop={value!r}",
            "write crop=content, or crop=center:<fraction of the shorter side kept>, "
            "e.g. crop=center:0.875 (torchvision's resize 256, centre crop 224)",
        )
    return f"center:{fraction:g}"


def split_options(spec: str) -> tuple[str, dict[str, str]]:
    """(body, options) of ``<body>?key=value&…``, unchecked: for the model specs
    (``torchvision:``, ``checkpoint:``), whose providers check their own few options."""
    body, _, query = spec.partition("?")
    return body, dict(part.partition("=")[::2] for part in query.split("&") if part)


def parse_spec(spec: str) -> SourceSpec:
    """Parse ``kind:location?opt=value&...``; unknown kinds or options raise DataError."""
    if isinstance(spec, SourceSpec):
        return spec
    if not isinstance(spec, str) or ":" not in spec:
        raise _fail(
            str(spec),
            "no source kind",
            "write builtin:<name>, cifar10:<path> or imagefolder:<path>",
        )
    kind, _, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise _fail(spec, f"unknown source kind {kind!r}", "use builtin:, cifar10: or imagefolder:")
    location, _, query = rest.partition("?")
    location = unquote(location.strip())
    if not location:
        raise _fail(spec, "no location after the kind", f"write {kind}:<name or path>")
    fields: dict[str, object] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        key, value = key.strip().lower(), unquote(value.strip())
        if key not in OPTIONS:
            raise _fail(spec, f"unknown option {key!r}", f"use one of {', '.join(OPTIONS)}")
        if not eq or value == "":
            raise _fail(spec, f"option {key!r} has no value", f"write {key}=<value>")
        if key in fields:
            raise _fail(spec, f"option {key!r} given twice", "give each option once")
        fields[key] = _parse_option(spec, key, value)
    if kind == "builtin":
        location = location.lower()
    return SourceSpec(kind=kind, location=location, **fields)  # type: ignore[arg-type]
