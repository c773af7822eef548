"""Where the leakage guard's near-duplicate threshold comes from (``NEAR_BITS`` in
``warmstart/stages/leakage.py``): perceptual-hash distances of copies of UCI digits (resized,
JPEG re-encoded, brightened) against the distances from UCI digits to distinct images (other
UCI digits, MNIST-5k cropped to 8×8, split-class MNIST at 8×8 and 28×28).

    .venv/bin/python benchmarks/leakage_threshold.py

No services; about a minute on 2 CPU cores.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from warmstart.data import load_source, parse_spec
from warmstart.stages.leakage import NEAR_BITS, near_mask, perceptual_hashes

BITS = (2, 4, 6, 8)


def _resized(x: np.ndarray, side: int) -> np.ndarray:
    h, w = x.shape[1:]
    img = Image.fromarray(x[0]).resize((side, side), Image.BILINEAR)
    return np.asarray(img.resize((w, h), Image.BILINEAR))[None]


def _jpeg(x: np.ndarray, quality: int, side: int | None = None) -> np.ndarray:
    img = Image.fromarray(x[0])
    if side:
        img = img.resize((side, side), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    out = Image.open(buf).convert("L")
    return np.asarray(out.resize(x.shape[1:][::-1], Image.BILINEAR) if side else out)[None]


COPIES = {
    "resized 8→16→8 px": lambda x: _resized(x, 16),
    "JPEG quality 75": lambda x: _jpeg(x, 75),
    "JPEG quality 50": lambda x: _jpeg(x, 50),
    "8→32 px, JPEG 75, →8 px": lambda x: _jpeg(x, 75, side=32),
    "brightness +10": lambda x: np.clip(x.astype(int) + 10, 0, 255).astype(np.uint8),
}


def _rates(query: np.ndarray, reference: np.ndarray) -> list[float]:
    q, r = perceptual_hashes(query), perceptual_hashes(reference)
    return [100.0 * near_mask(q, r, bits=b).mean() for b in BITS]


def _distinct_within(images: np.ndarray) -> list[float]:
    """Share of images with another (pixel-distinct) image of the same set within b bits."""
    h = perceptual_hashes(images)
    flat = images.reshape(len(images), -1)
    out = []
    for b in BITS:
        hits = 0
        for i in range(len(h)):
            close = np.flatnonzero(np.bitwise_count(h ^ h[i]) <= b)
            hits += any((flat[j] != flat[i]).any() for j in close if j != i)
        out.append(100.0 * hits / len(h))
    return out


def main() -> None:
    load = lambda spec: load_source(parse_spec(spec)).images  # noqa: E731
    uci = load("builtin:uci-digits")
    pick = np.random.default_rng(0).choice(len(uci), 500, replace=False)
    head = " | ".join(f"≤ {b} bits" for b in BITS)
    print(f"| copies of 500 UCI digits found | {head} |")
    print("|---|" + "---|" * len(BITS))
    for name, copy in COPIES.items():
        copies = np.stack([copy(uci[i]) for i in pick])
        d = np.bitwise_count(perceptual_hashes(copies) ^ perceptual_hashes(uci[pick]))
        print(f"| {name} | " + " | ".join(f"{100 * (d <= b).mean():.0f}%" for b in BITS) + " |")
    print(f"\n| distinct images flagged (false positives) | {head} |")
    print("|---|" + "---|" * len(BITS))
    mnist8 = load("builtin:mnist-5k?crop=content&size=8x8&channels=1")
    rows = {"UCI (1,797) vs MNIST-5k cropped to 8×8": _rates(uci, mnist8)}
    for size in ("8x8", "28x28"):
        a = load(f"builtin:mnist-5k?classes=0-4&size={size}")
        b = load(f"builtin:mnist-5k?classes=5-9&size={size}")
        rows[f"MNIST 5-9 (500) vs 0-4, {size}"] = _rates(b[:500], a)
    rows["UCI vs other UCI digits (same set)"] = _distinct_within(uci)
    for name, rates in rows.items():
        print(f"| {name} | " + " | ".join(f"{r:.2f}%" for r in rates) + " |")
    print(f"\nNEAR_BITS = {NEAR_BITS}")


if __name__ == "__main__":
    main()
