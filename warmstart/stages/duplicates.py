"""Near-duplicate detection for the leakage guard (numpy + torch), in two steps:

- candidates: each query image (validation, test), its mirror and its content box, pooled to at
  most 16×16 and normalised, against every reference image likewise: the ``TOP`` nearest
  references per query and chunk (matrix products, streamed chunk by chunk);
- the pixel check at the common geometry, every channel together (``pair_scores``): the Pearson
  correlation in place (or of the content boxes, when one image is cropped to its content)
  must reach the side's first threshold; the best over ±``shift_range`` px shifts and the
  mirror must reach the second, at least ``MOVED_FLOOR`` (shifts give images drawn apart many
  chances to line up: one-shape images at 32 px have few distinct places).

The thresholds per side are calibrated on MNIST alone (``benchmarks/leakage_threshold.py``,
BENCHMARKS §7: at most 0.5% of digits flagged by another writer's digit), except the floor,
which the one-shape images showed. Recall and false positives on data that played no part (UCI
digits, shapes, CIFAR-like textures, one-shape images) are reported there. ``RECALL`` is the
measured table (MNIST) that the verdict quotes where recall is weak (``weak_recall_notes``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

THUMB = 16  # side of the pooled image the candidates are found on
CONTENT_LEVEL = 24.0  # grey levels from the background that count as content (JPEG noise less)
FILLS = 0.9  # content box side / image side at which an image counts as cropped to content
MOVED_FLOOR = 0.998  # a shifted or mirrored match is a copy only when (near) exact, see below
TOP = 8  # candidates per query image and reference chunk that get the pixel check
_WORK = 4_000_000  # floats per block of candidate or pixel-check products (bounded memory)
# Pixel correlation a candidate needs, by image side, (in place, moved: see ``pair_scores``):
# calibrated on MNIST (copies vs other writers' digits), see BENCHMARKS §7.
NEAR_CORR = {
    8: (0.995, 0.998),
    16: (0.985, 0.998),
    28: (0.975, 0.998),
    32: (0.985, 0.998),
    64: (0.98, 0.998),
}
# Measured recall (MNIST, held-out sets agree within a few points: BENCHMARKS §7) per side and
# copy kind; the verdict names the kinds below ``WEAK``.
RECALL: dict[int, dict[str, float]] = {
    8: {
        "resized": 0.00,
        "JPEG q50": 0.00,
        "JPEG q70": 0.02,
        "JPEG q90": 1.00,
        "shift 1 px": 0.89,
        "shift 2 px": 0.00,
        "crop=content": 0.01,
        "mirror": 1.00,
        "rotate 10°": 0.00,
        "brightness ±20": 0.84,
        "contrast ×0.8/1.25": 1.00,
    },
    16: {
        "resized": 0.05,
        "JPEG q50": 0.72,
        "JPEG q70": 1.00,
        "JPEG q90": 1.00,
        "shift 1 px": 1.00,
        "shift 2 px": 0.98,
        "crop=content": 0.58,
        "mirror": 1.00,
        "rotate 10°": 0.00,
        "brightness ±20": 1.00,
        "contrast ×0.8/1.25": 1.00,
    },
    28: {
        "resized": 0.97,
        "JPEG q50": 1.00,
        "JPEG q70": 1.00,
        "JPEG q90": 1.00,
        "shift 1 px": 1.00,
        "shift 2 px": 1.00,
        "crop=content": 0.91,
        "mirror": 1.00,
        "rotate 10°": 0.00,
        "brightness ±20": 1.00,
        "contrast ×0.8/1.25": 1.00,
    },
    32: {
        "resized": 1.00,
        "JPEG q50": 1.00,
        "JPEG q70": 1.00,
        "JPEG q90": 1.00,
        "shift 1 px": 1.00,
        "shift 2 px": 1.00,
        "crop=content": 0.79,
        "mirror": 1.00,
        "rotate 10°": 0.00,
        "brightness ±20": 1.00,
        "contrast ×0.8/1.25": 1.00,
    },
    64: {
        "resized": 1.00,
        "JPEG q50": 1.00,
        "JPEG q70": 1.00,
        "JPEG q90": 1.00,
        "shift 1 px": 1.00,
        "shift 2 px": 1.00,
        "crop=content": 1.00,
        "mirror": 1.00,
        "rotate 10°": 0.00,
        "brightness ±20": 1.00,
        "contrast ×0.8/1.25": 1.00,
    },
}
WEAK = 0.9


def pixel_digests(images: np.ndarray) -> np.ndarray:
    """sha256 of each image's uint8 pixels (N×C×H×W), as 32-byte strings."""
    flat = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    return np.array([hashlib.sha256(row.tobytes()).digest() for row in flat], dtype="S32")


def _side(images: np.ndarray) -> int:
    return int(min(images.shape[2:]))


def near_corr(side: int) -> tuple[float, float]:
    """The thresholds (in place, moved) of the calibrated side nearest to ``side`` (log scale)."""
    return NEAR_CORR[min(NEAR_CORR, key=lambda s: abs(np.log(s / max(side, 1))))]


def shift_range(side: int) -> int:
    """Shifts tried in the pixel check: ±2 px, ±1 at 8 px (a quarter of the image is too much)."""
    return 1 if side < 16 else 2


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows mean-centred and scaled to unit norm (a flat row stays 0: it matches nothing)."""
    x = x - x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-6)


def canonical(images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's content (pixels more than ``CONTENT_LEVEL`` from the border's median) in
    its square box, scaled back to the image's size: what ``crop=content`` makes, and the same
    for a copy shifted or already cropped. An image without such content is kept whole. Also
    each box's side as a fraction of the image's (1: the content fills the frame)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    n, _, h, w = x.shape
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=2)
    bg = border.median(dim=2).values[:, :, None, None]
    mask = ((x - bg).abs() > CONTENT_LEVEL).any(1)
    rows, cols = mask.any(2).float(), mask.any(1).float()
    top, left = rows.argmax(1), cols.argmax(1)
    bottom, right = h - rows.flip(1).argmax(1), w - cols.flip(1).argmax(1)
    side = torch.maximum(bottom - top, right - left).float().clamp_min(1)
    cy, cx = (top + bottom).float() / 2, (left + right).float() / 2
    box = torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)
    box[rows.sum(1) == 0] = torch.tensor([0.0, 0.0, float(w), float(h)])
    boxes = torch.cat([torch.arange(n, dtype=torch.float32)[:, None], box], 1)
    return roi_align(x - bg, boxes, (h, w), sampling_ratio=2, aligned=True) + bg, side / min(h, w)


def _pooled(x: torch.Tensor) -> np.ndarray:
    side = (min(THUMB, x.shape[2]), min(THUMB, x.shape[3]))
    return _unit(F.adaptive_avg_pool2d(x, side).flatten(1)).numpy()


def descriptors(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image, and its content box (``canonical``), pooled to at most ``THUMB``² per
    channel, mean-centred, unit norm (two N×D arrays)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    return _pooled(x), _pooled(canonical(images)[0])


def _top(query: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """Per query row: the ``k`` reference rows of highest product (Q×k indices)."""
    k = min(k, len(reference))
    out = np.empty((len(query), k), dtype=np.intp)
    rows = max(1, _WORK // max(1, len(reference)))
    for s in range(0, len(query), rows):
        sims = query[s : s + rows] @ reference.T
        out[s : s + rows] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return out


def candidates(query: np.ndarray, reference: np.ndarray, k: int = TOP) -> tuple[np.ndarray, ...]:
    """Index pairs (query row, reference row): for each query image, the ``k`` nearest
    references by pooled image, by pooled mirror image and by pooled content box."""
    if not len(query) or not len(reference):
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    theirs = descriptors(reference)
    plain, boxed = descriptors(query)
    found = [_top(plain, theirs[0], k), _top(boxed, theirs[1], k)]
    found.append(_top(descriptors(query[..., ::-1])[0], theirs[0], k))
    rows = np.repeat(np.arange(len(query)), sum(f.shape[1] for f in found))
    pairs = np.unique(np.stack([rows, np.concatenate(found, axis=1).ravel()], 1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _shifted(x: torch.Tensor, centre: torch.Tensor, shift: int) -> torch.Tensor:
    """Per pair: the correlation of ``centre`` (unit rows, the reference's centre) with the
    window of ``x`` at every shift in ±``shift`` (P×S; a grouped convolution gives the dot
    products, box sums of ``x`` and ``x²`` each window's mean and norm)."""
    n, c, h, w = x.shape
    kernel = centre.reshape(n, c, h - 2 * shift, w - 2 * shift)
    dots = F.conv2d(x.reshape(1, n * c, h, w), kernel, groups=n)[0]
    box = torch.ones(1, 1, h - 2 * shift, w - 2 * shift)
    sums = F.conv2d(x.sum(1, keepdim=True), box)[:, 0]
    squares = F.conv2d((x * x).sum(1, keepdim=True), box)[:, 0]
    norms = (squares - sums * sums / centre.shape[1]).clamp_min(1e-6).sqrt()
    return (dots / norms).flatten(1)


def _aligned(x: torch.Tensor, y: torch.Tensor, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair: the correlation of ``y``'s centre with ``x`` in place, and the best with ``x``
    shifted or mirrored (and shifted)."""
    h, w = y.shape[2:]
    centre = _unit(y[:, :, shift : h - shift, shift : w - shift].flatten(1))
    rows = max(1, _WORK // max(1, x[0].numel()))
    still, moved = [torch.zeros(0)], [torch.zeros(0)]
    for s in range(0, len(x), rows):
        direct = _shifted(x[s : s + rows], centre[s : s + rows], shift)
        mirrored = _shifted(x[s : s + rows].flip(3), centre[s : s + rows], shift)
        still.append(direct[:, direct.shape[1] // 2])
        moved.append(torch.maximum(direct.max(1).values, mirrored.max(1).values))
    return torch.cat(still), torch.cat(moved)


def pair_scores(a: np.ndarray, b: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row pair (N×C×H×W each), Pearson correlations over every channel together:

    - in place: of the two images, or of their content boxes (``canonical``) when one image's
      content fills its frame (a ``crop=content`` copy; otherwise two one-shape images drawn
      apart, whose boxes hold the same content whatever their sizes and places, would match);
    - moved: the best of ``b``'s centre with ``a`` shifted by up to ±``shift`` px, or mirrored
      and shifted. Shifts give images drawn apart many more chances to line up (a one-shape
      image at 32 px has few distinct places), so moved counts under a stricter threshold."""
    x, y = torch.from_numpy(np.ascontiguousarray(a)).float(), torch.from_numpy(b).float()
    still, moved = _aligned(x, y, shift)
    (ca, fa), (cb, fb) = canonical(a), canonical(b)
    boxed = torch.einsum("nd,nd->n", _unit(ca.flatten(1)), _unit(cb.flatten(1)))
    cropped = torch.maximum(fa, fb) >= FILLS
    return torch.where(cropped, torch.maximum(still, boxed), still).numpy(), moved.numpy()


def near_duplicates(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each query image: has ``reference`` (same geometry) a near-duplicate of it?"""
    out = np.zeros(len(query), dtype=bool)
    q, r = candidates(query, reference)
    side = _side(query)
    if len(q):
        still, moved = pair_scores(query[q], reference[r], shift_range(side))
        t_still, t_moved = near_corr(side)
        out[q[(still >= t_still) | (moved >= t_moved)]] = True
    return out


def weak_recall_notes(size: tuple[int, int]) -> list[str]:
    """Where the rule's measured recall at this image size is below ``WEAK``, e.g.
    "near-duplicate recall at 8×8 for JPEG q50 copies: 30%"."""
    side = int(min(size))
    if not RECALL:
        return []
    near = min(RECALL, key=lambda s: abs(np.log(s / max(side, 1))))
    return [
        f"near-duplicate recall at {size[0]}×{size[1]} for {kind} copies: {100 * r:.0f}%"
        for kind, r in RECALL[near].items()
        if r < WEAK
    ]
