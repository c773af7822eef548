"""Leakage guard: before anything trains, compare the images the models learn from (the source
dataset, and the target's unlabelled pool that GAN/autoencoder pretraining may use) with the
target's validation and test images.

Two checks, both at the common geometry (the source is ingested at the target's size and
channels, see ``ingest(like=target)``):

- exact: sha256 of each image's uint8 pixels; equal digests are the same image;
- near-duplicate (source only): a 64-bit perceptual hash (``imagehash.phash`` of the grey image)
  within ``NEAR_BITS`` bits, confirmed by the pixels: their Pearson correlation at the common
  geometry is at least ``NEAR_CORR``. The hash finds candidates cheaply; the correlation throws
  out distinct images whose coarse shape agrees (the hash sees a 32×32 resize's lowest
  frequencies, which two writers' digits of one style can share at 16 px and up). Measured on
  MNIST-5k at 8, 16 and 28 px, UCI digits and shapes (``benchmarks/leakage_threshold.py``,
  BENCHMARKS §7): the correlation never dropped a copy the hash found (copies resized ×2 and
  back, JPEG q75/q50, upscaled ×4 + JPEG + back, +10 brightness correlate ≥ 0.86 at 8 px,
  ≥ 0.92 at 16 px, ≥ 0.94 at 28 px), while distinct digits from disjoint classes within 4 bits
  fall from 0.76% to 0.12% of images at 16 px (the false positive that refused split-class
  MNIST) and from 1.00% to 0.04% at 28 px. At 8×8 the pixels cannot tell (distinct digits
  correlate up to 0.96): there the hash does the work, copies are found at 94–100% (resized,
  upscaled JPEG, brightness) and 17–75% (JPEG re-encoded at 8 px), and distinct digits are found
  at 0.11% (UCI vs MNIST, the demo) to 0.96% (MNIST's classes 5-9 vs 0-4, just under the
  tolerance).
  A flat image (no pixel varies) has no correlation and is never a near-duplicate; an
  identical one is still found by the exact check.

The target pool gets the exact check only: its indices are disjoint from validation and test by
construction, and a perceptual hash cannot tell two writers' digits of one class apart at 8×8
(7.5% of UCI images have another UCI image within 4 bits), so a near-duplicate there is noise.

A split counts as leaky when more than ``TOLERANCE`` (1%) of its images are found: a few chance
matches (blank images, near-identical strokes) are tolerated, a copied subset is not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import imagehash
import numpy as np
from PIL import Image

from warmstart.contracts import Job, RunPlan
from warmstart.data import Splits, load_splits, open_dataset, parse_spec
from warmstart.data.transforms import resize_image, to_gray
from warmstart.errors import ConfigError, DataError, WarmstartError
from warmstart.params import PipelineParams
from warmstart.stages.config import data_needs
from warmstart.stages.sources import LearnedFrom

NEAR_BITS = 4  # perceptual-hash Hamming distance (of 64 bits) that makes a near-duplicate candidate
NEAR_CORR = 0.85  # pixel correlation a candidate needs to count (copies ≥ 0.86, see above)
TOLERANCE = 0.01  # fraction of a split's images that may match before the run counts as leaky
SPLITS = ("test", "validation")
CHUNK_ROWS = 4096  # source images converted and hashed at a time (bounded temporaries)
_BLOCK = 8_000_000  # query × reference hashes per Hamming block (64 MB of uint64)
_PAIRS = 256  # candidate pairs whose pixels are correlated at a time (bounded float temporaries)


class LeakageError(ConfigError):
    """The source or the unsupervised pool holds the target's validation or test images."""


@dataclass(frozen=True)
class Overlap:
    """How many images of one target split a training set holds (exact, and near only)."""

    what: str  # "source" | "target pool"
    split: str  # "test" | "validation"
    exact: int  # images with an identical copy
    near: int  # images with a near-duplicate but no identical copy
    total: int  # images in the split

    @property
    def found(self) -> int:
        return self.exact + self.near

    @property
    def leaky(self) -> bool:
        return self.found > TOLERANCE * self.total


@dataclass(frozen=True)
class LeakageReport:
    """Every overlap of one run, with the one line a user reads when it is refused."""

    overlaps: tuple[Overlap, ...]

    @property
    def leaky(self) -> bool:
        return any(o.leaky for o in self.overlaps)

    def message(self) -> str:
        """One line naming the counts, e.g. "source shares 1000 of 1000 test images and 750 of
        750 validation images with the target (exact 1750, near-duplicates 0) …"."""
        parts = []
        for what in dict.fromkeys(o.what for o in self.overlaps if o.leaky):
            mine = [o for o in self.overlaps if o.what == what]
            shares = " and ".join(f"{o.found} of {o.total} {o.split} images" for o in mine)
            exact, near = sum(o.exact for o in mine), sum(o.near for o in mine)
            parts.append(
                f"{what} shares {shares} with the target (exact {exact}, near-duplicates {near})"
            )
        if not parts:
            return "no leakage: " + ", ".join(
                f"{o.what} {o.found}/{o.total} {o.split}" for o in self.overlaps
            )
        return (
            "; ".join(parts) + f" — above the {TOLERANCE:.0%} tolerance: the gate would measure "
            "memory, not transfer; use a disjoint source or target, or --allow-leakage to run "
            "anyway (never promoted)"
        )

    def metrics(self) -> dict[str, float]:
        """Counts for MLflow: ``leakage.<what>.<split>.exact|near`` (``target pool`` → ``pool``,
        ``source model's labels`` → ``source_model_labels``)."""
        out: dict[str, float] = {}
        for o in self.overlaps:
            what = o.what.replace("target ", "").replace("'s", "").replace(" ", "_")
            key = f"leakage.{what}.{o.split}"
            out[f"{key}.exact"], out[f"{key}.near"] = float(o.exact), float(o.near)
        return out

    def to_dict(self) -> dict:
        return {"leaky": self.leaky, "overlaps": [asdict(o) for o in self.overlaps]}


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


def overlaps(
    what: str,
    reference: np.ndarray | Iterable[np.ndarray],
    splits: dict[str, np.ndarray],
    *,
    near: bool,
) -> list[Overlap]:
    """Count, per split, the images of ``splits`` that ``reference`` holds (same geometry).
    ``reference`` may be an array or its row chunks (e.g. shard by shard): each chunk is
    compared as it comes, and only the 32-byte digests of its images are kept."""
    chunks = [reference] if isinstance(reference, np.ndarray) else reference
    hashes = {s: perceptual_hashes(i) for s, i in splits.items() if near and len(i)}
    close = {s: np.zeros(len(i), dtype=bool) for s, i in splits.items()}
    digests: set[bytes] = set()
    for chunk in chunks:
        digests.update(pixel_digests(chunk).tolist())
        if hashes and len(chunk):
            theirs = perceptual_hashes(chunk)
            for split, mine in hashes.items():
                close[split] |= near_duplicates(splits[split], mine, chunk, theirs)
    found = []
    for split, images in splits.items():
        exact = np.array([d in digests for d in pixel_digests(images).tolist()], dtype=bool)
        near_only = int((close[split] & ~exact).sum())
        found.append(Overlap(what, split, int(exact.sum()), near_only, len(images)))
    return found


def common_geometry(images: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``images`` at ``like``'s channels and size (a no-op when they already match)."""
    if images.shape[1] != like.shape[1]:
        images = to_gray(images) if like.shape[1] == 1 else np.repeat(images, 3, axis=1)
    size = tuple(like.shape[2:])
    if tuple(images.shape[2:]) != size:
        images = np.stack([resize_image(img, size) for img in images])
    return images


def _row_chunks(images: np.ndarray, rows: int = CHUNK_ROWS) -> Iterable[np.ndarray]:
    """``images`` a few thousand rows at a time: the conversions and hashes make temporary
    copies several times the size of what they are given."""
    return (images[i : i + rows] for i in range(0, len(images), rows))


def check(
    splits: dict[str, np.ndarray],
    *,
    source: np.ndarray | Iterable[np.ndarray] | None = None,
    pool: np.ndarray | None = None,
) -> LeakageReport:
    """Compare the source (exact + near; an array, or its row chunks) and the target pool
    (exact) with the target's ``splits`` (name → N×C×H×W uint8 images)."""
    found: list[Overlap] = []
    like = next(iter(splits.values()))
    if source is not None:
        chunks = _row_chunks(source) if isinstance(source, np.ndarray) else source
        at_target = (common_geometry(chunk, like) for chunk in chunks)
        found += overlaps("source", at_target, splits, near=True)
    if pool is not None:
        found += overlaps("target pool", pool, splits, near=False)
    return LeakageReport(tuple(found))


def uses_target_pool(params: PipelineParams) -> bool:
    """Whether any strategy pretrains on the target's unlabelled pool."""
    return any(data_needs(s, params)[1] for s in params.strategies)


def check_job(job: Job, source_hash: str | None) -> LeakageReport:
    """The run's check: the ingested source (if any) and, when a strategy pretrains on it, the
    target pool, against the stored split's validation and test images. A source above the
    in-memory limit is read shard by shard (``open_dataset``), never whole."""
    target, split = open_dataset(job.target.hash), load_splits(job.split.hash)
    images = {"test": target.images[split.test], "validation": target.images[split.val]}
    source = None
    if source_hash is not None and job.source.needs_dataset:
        ds = open_dataset(source_hash)
        source = ds.images if ds.in_memory else ds.images.chunks()
    pool = None
    if uses_target_pool(job.params):
        pool = target.images[np.union1d(split.train, split.unlabelled)]
    found = check(images, source=source, pool=pool).overlaps
    for seen in job.source.learned_from:
        found += tuple(learned_overlaps(seen, job, images, split))
    return LeakageReport(found)


def learned_overlaps(
    seen: LearnedFrom, job: Job, images: dict[str, np.ndarray], split: Splits
) -> list[Overlap]:
    """What a source model learned from against this run's validation and test images: by index
    when it was trained on another split of this very target (everything outside that split's
    test set: each seed draws its k-shot set from the pool, and label-free pretraining may use
    all of it; nothing when it is this very split), else image by image. A split no longer
    stored counts as its whole dataset; a dataset not in this store cannot be compared."""
    if seen.dataset_hash == job.target.hash and seen.split_hash == job.split.hash:
        return []
    seen_idx = None
    if seen.split_hash:
        try:
            theirs = load_splits(seen.split_hash)  # all but its test set, in its own dataset
            seen_idx = np.union1d(np.union1d(theirs.train, theirs.val), theirs.unlabelled)
        except DataError:
            seen_idx = None
    if seen.dataset_hash == job.target.hash and seen_idx is not None:
        parts = (("test", split.test), ("validation", split.val))
        return [Overlap(seen.what, s, int(np.isin(i, seen_idx).sum()), 0, len(i)) for s, i in parts]
    try:
        ds = open_dataset(seen.dataset_hash)
    except DataError:
        return []  # not in this store: nothing to compare (the lineage tags still name it)
    ref = ds.images if seen_idx is None else ds.images[seen_idx]
    chunks = _row_chunks(ref) if isinstance(ref, np.ndarray) else ref.chunks()
    like = next(iter(images.values()))
    return overlaps(seen.what, (common_geometry(c, like) for c in chunks), images, near=True)


def enforce(report: LeakageReport, *, allow: bool) -> str | None:
    """Refuse a leaky run (``LeakageError``, one line) unless ``allow``; then return the reason
    the candidate can never be promoted. None when there is no leakage."""
    if not report.leaky:
        return None
    if not allow:
        raise LeakageError(report.message())
    return "leakage: " + report.message().split(" — ")[0] + " (run with --allow-leakage)"


def refuse_same_dataset(plan: RunPlan) -> None:
    """Before any service or flow run: one spec as both source and target is leakage on its
    face (every validation and test image is in the source), unless ``allow_leakage``."""
    if plan.params.allow_leakage or not plan.source.needs_dataset:
        return
    try:
        source, target = parse_spec(plan.source.spec), parse_spec(plan.target)
    except WarmstartError:
        return  # ``validate`` names the bad spec
    like = {k: getattr(target, k) for k in ("size", "channels") if getattr(source, k) is None}
    if source.with_options(**like).canonical() == target.canonical():
        raise LeakageError(
            f"--source and --target are the same dataset ({target.canonical()}): the source holds "
            "every validation and test image; use a disjoint source, or --allow-leakage to run "
            "anyway (never promoted)"
        )
