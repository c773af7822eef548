"""Where the leakage guard's near-duplicate rule comes from (``NEAR_BITS`` and ``NEAR_CORR`` in
``warmstart/stages/leakage.py``): a perceptual-hash candidate within ``NEAR_BITS`` bits counts
when its pixels correlate at least ``NEAR_CORR``. For copies of real digits (resized, JPEG
re-encoded, brightened) and for distinct images (other digit classes, another digit set,
synthetic shapes), at 8, 16 and 28 px: the share found by the hash alone, and by hash + pixels.

    .venv/bin/python benchmarks/leakage_threshold.py

No services; about a minute on 2 CPU cores.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from warmstart.data import load_source, parse_spec
from warmstart.stages.duplicates import (
    NEAR_BITS,
    NEAR_CORR,
    near_duplicates,
    near_mask,
    perceptual_hashes,
    pixel_correlation,
)

BITS = (2, 4, 6, 8)


def _resized(x: np.ndarray, factor: int) -> np.ndarray:
    h, w = x.shape[1:]
    img = Image.fromarray(x[0]).resize((w * factor, h * factor), Image.BILINEAR)
    return np.asarray(img.resize((w, h), Image.BILINEAR))[None]


def _jpeg(x: np.ndarray, quality: int, factor: int | None = None) -> np.ndarray:
    h, w = x.shape[1:]
    img = Image.fromarray(x[0])
    if factor:
        img = img.resize((w * factor, h * factor), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    out = Image.open(buf).convert("L")
    return np.asarray(out.resize((w, h), Image.BILINEAR) if factor else out)[None]


COPIES = {
    "resized ×2 and back": lambda x: _resized(x, 2),
    "JPEG quality 75": lambda x: _jpeg(x, 75),
    "JPEG quality 50": lambda x: _jpeg(x, 50),
    "×4, JPEG 75, back": lambda x: _jpeg(x, 75, factor=4),
    "brightness +10": lambda x: np.clip(x.astype(int) + 10, 0, 255).astype(np.uint8),
}


def load(spec: str) -> np.ndarray:
    return load_source(parse_spec(spec)).images


def _row(name: str, cells: list[str]) -> None:
    print(f"| {name} | " + " | ".join(cells) + " |")


def _header(first: str) -> None:
    cells = [f"≤ {b} bits" for b in BITS] + [f"≤ {NEAR_BITS} bits + r ≥ {NEAR_CORR}"]
    _row(first, cells + ["r of the pairs"])
    print("|---|" + "---|" * (len(BITS) + 2))


def copies_table(sets: dict[str, np.ndarray]) -> None:
    """Copies of 300 images of each set: found by the hash at each threshold, and by the rule;
    the lowest pixel correlation of a copy with its original."""
    _header("copies found")
    for set_name, images in sets.items():
        pick = images[np.random.default_rng(0).choice(len(images), 300, replace=False)]
        for name, copy in COPIES.items():
            copies = np.stack([copy(x) for x in pick])
            d = np.bitwise_count(perceptual_hashes(copies) ^ perceptual_hashes(pick))
            r = pixel_correlation(copies, pick)
            cells = [f"{100 * (d <= b).mean():.0f}%" for b in BITS]
            cells.append(f"{100 * ((d <= NEAR_BITS) & (r >= NEAR_CORR)).mean():.0f}%")
            _row(f"{set_name}: {name}", cells + [f"min {r.min():.3f}"])


def _best_candidate_r(query: np.ndarray, reference: np.ndarray, bits: int) -> float:
    hq, hr = perceptual_hashes(query), perceptual_hashes(reference)
    best = 0.0
    for i in np.flatnonzero(near_mask(hq, hr, bits)):
        j = np.flatnonzero(np.bitwise_count(hq[i] ^ hr) <= bits)
        best = max(
            best,
            float(pixel_correlation(np.repeat(query[i : i + 1], len(j), 0), reference[j]).max()),
        )
    return best


def distinct_table(pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Distinct images flagged (false positives): query images with a reference image within b
    bits, and under the rule; the highest correlation among the rule's hash candidates."""
    _header("distinct images flagged")
    for name, (query, reference) in pairs.items():
        hq, hr = perceptual_hashes(query), perceptual_hashes(reference)
        cells = [f"{100 * near_mask(hq, hr, bits=b).mean():.2f}%" for b in BITS]
        rule = near_duplicates(query, hq, reference, hr)
        cells.append(f"{100 * rule.mean():.2f}% ({rule.sum()})")
        _row(
            f"{name} ({len(query):,})",
            cells + [f"max {_best_candidate_r(query, reference, NEAR_BITS):.3f}"],
        )


def within_set(images: np.ndarray) -> str:
    """Share of images with another, pixel-distinct image of the same set under the rule."""
    h, flat = perceptual_hashes(images), images.reshape(len(images), -1)
    hits = 0
    for i in range(len(images)):
        j = [
            k
            for k in np.flatnonzero(np.bitwise_count(h ^ h[i]) <= NEAR_BITS)
            if (flat[k] != flat[i]).any()
        ]
        hits += bool(j) and bool(
            (
                pixel_correlation(np.repeat(images[i : i + 1], len(j), 0), images[j]) >= NEAR_CORR
            ).any()
        )
    return f"{100 * hits / len(images):.2f}%"


def main() -> None:
    uci = load("builtin:uci-digits")
    mnist = {
        s: (
            load(f"builtin:mnist-5k?classes=0-4&size={s}"),
            load(f"builtin:mnist-5k?classes=5-9&size={s}"),
        )
        for s in ("8x8", "16x16", "28x28")
    }
    copies_table({"UCI 8×8": uci} | {f"MNIST {s}": b for s, (_, b) in mnist.items()})
    print()
    shapes = lambda c, s: load(f"builtin:shapes?n=3000&num_classes=8&classes={c}&size={s}")  # noqa: E731
    pairs = {
        "UCI vs MNIST-5k cropped to 8×8": (
            uci,
            load("builtin:mnist-5k?crop=content&size=8x8&channels=1"),
        )
    }
    pairs |= {f"MNIST 5-9 vs 0-4, {s}": (b, a) for s, (a, b) in mnist.items()}
    pairs |= {
        f"shapes 4-7 vs 0-3, {s}": (shapes("4-7", s), shapes("0-3", s)) for s in ("16x16", "32x32")
    }
    distinct_table(pairs)
    print(f"\nUCI vs other UCI digits (same set) under the rule: {within_set(uci)}")
    print(f"NEAR_BITS = {NEAR_BITS}, NEAR_CORR = {NEAR_CORR}")


if __name__ == "__main__":
    main()
