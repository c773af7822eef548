"""Leakage guard: before anything trains, compare the images the models learn from (the source
dataset, and the target's unlabelled pool that GAN/autoencoder pretraining may use) with the
target's validation and test images.

Two checks, both at the common geometry (the source is ingested at the target's size and
channels, see ``ingest(like=target)``):

- exact: sha256 of each image's uint8 pixels; equal digests are the same image;
- near-duplicate (source only): ``warmstart.stages.duplicates``. Candidates by pooled
  thumbnail (of the image, its mirror and its content box), confirmed by the colours (every
  channel's mean and spread, up to brightness/contrast jitter) and the pixels: the Pearson
  correlation over the channels, each centred on its own, in place or after the best ±2 px shift
  or mirror, of the images or of their content boxes, reaches a threshold per image side
  calibrated on MNIST alone (BENCHMARKS §7,
  where recall and false positives are reported on UCI digits, shapes, CIFAR-like textures and
  independently drawn one-shape images). A flat image has no correlation and is never a
  near-duplicate; an identical one is still found by the exact check.

The target pool gets the exact check only: its indices are disjoint from validation and test by
construction, and at 8×8 two writers' digits of one class can be as alike as a copy, so a
near-duplicate there is noise.

Every validation and test image found is removed from the run's split (``remove_flagged``):
every arm, scratch and the controls included, selects and is evaluated without it, and the
verdict says how many (0 too). ``TOLERANCE`` (1%) only decides when a source is so contaminated
that the run is refused outright (a copied subset, not a few chance matches).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from warmstart.contracts import Job, RunPlan, SplitRef
from warmstart.data import Splits, load_splits, open_dataset, parse_spec, store_splits
from warmstart.data.splits import without
from warmstart.data.transforms import resize_image, to_gray
from warmstart.errors import ConfigError, DataError, WarmstartError
from warmstart.params import PipelineParams
from warmstart.source_names import source_names
from warmstart.stages.config import data_needs
from warmstart.stages.duplicates import near_duplicates, pixel_digests
from warmstart.stages.sources import LearnedFrom

TOLERANCE = 0.01  # fraction of a split's images that may match before the run counts as leaky
SPLITS = ("test", "validation")
CHUNK_ROWS = 4096  # source images converted and hashed at a time (bounded temporaries)


class LeakageError(ConfigError):
    """The source or the unsupervised pool holds the target's validation or test images."""


@dataclass(frozen=True)
class Overlap:
    """How many images of one target split a training set holds (exact, and near only)."""

    what: str  # "source" (with several: "source <name>") | "target pool"
    split: str  # "test" | "validation"
    exact: int  # images with an identical copy
    near: int  # images with a near-duplicate but no identical copy
    total: int  # images in the split
    flagged: tuple[int, ...] = ()  # positions in the split's index array (exact or near)

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
    source_labels: int = 0  # this split's labelled images the source model was fine-tuned on
    labels_by_source: tuple[int, ...] = ()  # the same per planned source, when there are several

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

    def flagged(self, split: str) -> np.ndarray:
        """Positions in ``split``'s index array that any check found (sorted, distinct)."""
        mine = [np.asarray(o.flagged, dtype=np.int64) for o in self.overlaps if o.split == split]
        return np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *mine]))

    def to_dict(self) -> dict:
        return {"leaky": self.leaky, "overlaps": [asdict(o) for o in self.overlaps]}


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
    close = {s: np.zeros(len(i), dtype=bool) for s, i in splits.items()}
    digests: set[bytes] = set()
    for chunk in chunks:
        digests.update(pixel_digests(chunk).tolist())
        if near and len(chunk):
            for split, mine in splits.items():
                close[split] |= near_duplicates(mine, chunk)
    found = []
    for split, images in splits.items():
        exact = np.array([d in digests for d in pixel_digests(images).tolist()], dtype=bool)
        near_only = int((close[split] & ~exact).sum())
        at = tuple(int(i) for i in np.flatnonzero(exact | close[split]))
        found.append(Overlap(what, split, int(exact.sum()), near_only, len(images), at))
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


def check_job(job: Job, hashes: tuple[str | None, ...]) -> LeakageReport:
    """The run's check: each ingested source (one hash or None per planned source) and, when a
    strategy pretrains on it, the target pool, against the stored split's validation and test
    images. A source above the in-memory limit is read shard by shard (``open_dataset``)."""
    target, split = open_dataset(job.target.hash), load_splits(job.split.hash)
    images = {"test": target.images[split.test], "validation": target.images[split.val]}
    pool = None
    if any(uses_target_pool(job.plan.only(i).params) for i in range(len(hashes))):
        pool = target.images[np.union1d(split.train, split.unlabelled)]
    found, labels = (), []
    for planned, hash_, what in zip(job.plan.sources, hashes, source_whats(job), strict=True):
        source = None
        if hash_ is not None and planned.needs_dataset:
            ds = open_dataset(hash_)
            source = ds.images if ds.in_memory else ds.images.chunks()
        got = check(images, source=source, pool=pool).overlaps
        found += tuple(dataclasses.replace(o, what=what) if o.what == "source" else o for o in got)
        pool = None  # the target pool is checked once
        for seen in planned.learned_from:
            found += tuple(learned_overlaps(seen, job, images, split))
        labels.append(sum(learned_labels(seen, job) for seen in planned.learned_from))
    return LeakageReport(found, sum(labels), tuple(labels) if len(labels) > 1 else ())


def source_whats(job: Job) -> list[str]:
    """How the report names each source's overlaps: ``source``, or with several sources
    ``source <name>`` (the name its arms carry, ``RunPlan.labels``)."""
    specs = [s.spec for s in job.plan.sources]
    return ["source"] if len(specs) == 1 else [f"source {n}" for n in source_names(specs)]


def learned_labels(seen: LearnedFrom, job: Job) -> int:
    """Labelled images of this target that a source model was fine-tuned on: its split's k-shot
    draw (which seed drew it is not recorded, so it counts as a draw of its own)."""
    if seen.dataset_hash != job.target.hash or not seen.split_hash:
        return 0
    try:
        return len(load_splits(seen.split_hash).train)
    except DataError:
        return 0


def learned_overlaps(
    seen: LearnedFrom, job: Job, images: dict[str, np.ndarray], split: Splits
) -> list[Overlap]:
    """What a source model learned from against this run's validation and test images: by index
    when it was trained on another split of this very target (everything outside that split's
    test set: each seed draws its k-shot set from the pool, and label-free pretraining may use
    all of it; nothing when it is this very split), else image by image. A split no longer
    stored counts as its whole dataset; a dataset not in this store cannot be compared."""
    if seen.dataset_hash == job.target.hash and this_split(seen, job):
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
        return [_by_index(seen.what, s, np.isin(i, seen_idx)) for s, i in parts]
    try:
        ds = open_dataset(seen.dataset_hash)
    except DataError:
        return []  # not in this store: nothing to compare (the lineage tags still name it)
    ref = ds.images if seen_idx is None else ds.images[seen_idx]
    chunks = _row_chunks(ref) if isinstance(ref, np.ndarray) else ref.chunks()
    like = next(iter(images.values()))
    return overlaps(seen.what, (common_geometry(c, like) for c in chunks), images, near=True)


def _by_index(what: str, split: str, hit: np.ndarray) -> Overlap:
    return Overlap(what, split, int(hit.sum()), 0, len(hit), tuple(map(int, np.flatnonzero(hit))))


def this_split(seen: LearnedFrom, job: Job) -> bool:
    """Was ``seen`` this run's very split (or the split the guard cleaned into it)?"""
    if not seen.split_hash:
        return False
    if seen.split_hash == job.split.hash:
        return True
    try:
        return load_splits(seen.split_hash).derived_from == job.split.hash
    except DataError:
        return False


def remove_flagged(job: Job, report: LeakageReport) -> SplitRef:
    """The run's split less every validation and test image the guard flagged (stored, by its
    own hash, as derived from the split it was made from); ``job.split`` when none was."""
    flagged = {s: report.flagged(s) for s in SPLITS}
    if not any(len(f) for f in flagged.values()):
        return job.split
    clean = without(load_splits(job.split.hash), val=flagged["validation"], test=flagged["test"])
    return dataclasses.replace(
        job.split,
        hash=store_splits(clean),
        val=len(clean.val),
        test=len(clean.test),
        removed_val=len(flagged["validation"]),
        removed_test=len(flagged["test"]),
    )


def same_removal(cleaned: SplitRef, split: SplitRef) -> SplitRef:
    """``split`` (of the same target, e.g. at another k: the same validation and test images)
    less the images the guard removed from ``cleaned``'s original; ``split`` when none were."""
    if not (cleaned.removed_val or cleaned.removed_test):
        return split
    clean = load_splits(cleaned.hash)
    before = load_splits(clean.derived_from or cleaned.hash)
    mine = load_splits(split.hash)
    val = np.flatnonzero(np.isin(mine.val, np.setdiff1d(before.val, clean.val)))
    test = np.flatnonzero(np.isin(mine.test, np.setdiff1d(before.test, clean.test)))
    out = without(mine, val=val, test=test)
    return dataclasses.replace(
        split, hash=store_splits(out), val=len(out.val), test=len(out.test),
        removed_val=len(val), removed_test=len(test),
    )  # fmt: skip


def removal_record(job: Job, report: LeakageReport) -> dict:
    """What ``leakage.json`` holds: the split the images were removed from, each removed image's
    position in its split's index array and its dataset index, and every count (recomputable:
    ``np.delete(split.test, positions)`` gives the test indices every arm was evaluated on)."""
    split = load_splits(job.split.hash)
    arrays = {"validation": split.val, "test": split.test}
    removed = {
        s: {"positions": report.flagged(s).tolist(), "index": arrays[s][report.flagged(s)].tolist()}
        for s in SPLITS
    }
    return {"split_before": job.split.hash, "removed": removed, **report.to_dict()}


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
