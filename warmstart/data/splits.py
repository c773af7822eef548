"""Seeded, stratified train/val/test splits with k-shot sampling, stored by content hash under
``s3://<bucket>/splits/<hash>/`` so every model in a run, and a rerun, sees the same examples.

Val/test depend only on (dataset, seed, fractions), never on ``k_shot``; the k-shot training
sets for one seed are nested (the k=1 set is inside the k=5 set). A training seed other than 0
draws its own k-shot set from the same pool (``seed_train``); ``capped_val`` caps validation
labels per class.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass

import numpy as np

from warmstart import safepath, storage
from warmstart.data.dataset import ImageDataset
from warmstart.errors import DataError

PREFIX = "splits"
PARTS = ("train", "val", "test", "unlabelled")


@dataclass
class Splits:
    """Index arrays into one dataset (int64, sorted). ``unlabelled`` is the rest of the train
    pool when ``k_shot`` is set (for autoencoder/GAN pretraining), else empty."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    unlabelled: np.ndarray
    dataset_hash: str
    seed: int
    k_shot: int | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    test_source: str = "stratified"  # or "predefined"

    def __post_init__(self) -> None:
        for part in PARTS:
            setattr(self, part, np.asarray(getattr(self, part), dtype=np.int64))

    def meta(self) -> dict:
        return {
            "dataset_hash": self.dataset_hash,
            "seed": self.seed,
            "k_shot": self.k_shot,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "test_source": self.test_source,
            "sizes": {part: len(getattr(self, part)) for part in PARTS},
        }

    def content_hash(self) -> str:
        """sha256 over the definition (dataset hash, seed, k, fractions) and the index arrays."""
        h = hashlib.sha256()
        meta = {k: v for k, v in self.meta().items() if k != "sizes"}
        h.update(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode())
        for part in PARTS:
            arr = np.ascontiguousarray(getattr(self, part), dtype="<i8")
            h.update(part.encode() + len(arr).to_bytes(8, "little") + arr.tobytes())
        return h.hexdigest()

    def check(self, ds: ImageDataset) -> None:
        """Raise DataError unless these splits were made for ``ds``."""
        if ds.content_hash() != self.dataset_hash:
            raise DataError(
                f"splits were made for dataset {self.dataset_hash[:12]}…, not {ds.name}: "
                "make splits for this dataset"
            )


def _allocate(n: int, fraction: float) -> int:
    return int(round(fraction * n)) if fraction > 0 else 0


def make_splits(
    ds: ImageDataset,
    *,
    seed: int,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    k_shot: int | None = None,
) -> Splits:
    """Stratified splits. With a predefined test split it is the test set and val is taken from
    the rest (``val_fraction`` of it); otherwise test and val are fractions of each class."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"val_fraction={val_fraction}, test_fraction={test_fraction}: each must be in [0, 1) "
            "and together below 1"
        )
    if k_shot is not None and k_shot < 1:
        raise DataError(f"k_shot={k_shot}: k must be at least 1 (or None for all labels)")
    rng = np.random.default_rng([seed, 0x5B1])
    predefined = ds.predefined_test is not None and bool(ds.predefined_test.any())
    train_pool, val, test = [], [], []
    for c, name in enumerate(ds.classes):
        members = np.flatnonzero(ds.labels == c)
        if predefined:
            test.append(members[ds.predefined_test[members]])
            members = members[~ds.predefined_test[members]]
        members = rng.permutation(members)
        n = len(members)
        want_test, want_val = not predefined and test_fraction > 0, val_fraction > 0
        if n < 1 + want_test + want_val:
            raise DataError(
                f"class {name!r} has {n} image(s) outside the test split, too few for train/val/"
                "test: add images to it, or leave the class out with classes="
            )
        n_test = max(1, _allocate(n, test_fraction)) if want_test else 0
        n_val = max(1, _allocate(n, val_fraction)) if want_val else 0
        while n_test + n_val > n - 1:  # keep at least one training image per class
            if n_test >= n_val:
                n_test -= 1
            else:
                n_val -= 1
        test.append(members[:n_test])
        val.append(members[n_test : n_test + n_val])
        train_pool.append(members[n_test + n_val :])
    train, unlabelled = _k_shot(ds, train_pool, k_shot, seed)
    return Splits(
        train=np.sort(np.concatenate(train)),
        val=np.sort(np.concatenate(val)),
        test=np.sort(np.concatenate(test)),
        unlabelled=np.sort(np.concatenate(unlabelled)) if unlabelled else np.empty(0, np.int64),
        dataset_hash=ds.content_hash(),
        seed=seed,
        k_shot=k_shot,
        val_fraction=val_fraction,
        test_fraction=0.0 if predefined else test_fraction,
        test_source="predefined" if predefined else "stratified",
    )


def _k_shot(
    ds: ImageDataset, pools: list[np.ndarray], k: int | None, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if k is None:
        return pools, []
    smallest = min(range(len(pools)), key=lambda c: len(pools[c]))
    if k > len(pools[smallest]):
        raise DataError(
            f"k_shot={k} is larger than class {ds.classes[smallest]!r}'s training pool "
            f"({len(pools[smallest])} images): use k_shot<={len(pools[smallest])} or add images"
        )
    rng = np.random.default_rng([seed, 0x4B])
    train, rest = [], []
    for pool in pools:
        order = rng.permutation(np.sort(pool))  # the same order for every k: nested k-shot sets
        train.append(order[:k])
        rest.append(order[k:])
    return train, rest


def seed_train(splits: Splits, labels: np.ndarray, seed: int) -> np.ndarray:
    """The k-shot training indices a model trained with ``seed`` uses: seed 0 keeps the stored
    draw, any other seed draws ``k`` per class afresh from the same training pool (train ∪
    unlabelled), so the interval over seeds includes which k images were drawn. Validation, test
    and the unlabelled pool as a whole never change."""
    if seed == 0 or splits.k_shot is None:
        return splits.train
    pool = np.union1d(splits.train, splits.unlabelled)
    rng = np.random.default_rng([splits.seed, seed, 0x4B])
    classes = np.unique(np.asarray(labels)[splits.train])
    draws = [rng.permutation(pool[labels[pool] == c])[: splits.k_shot] for c in classes]
    return np.sort(np.concatenate(draws))


def capped_val(splits: Splits, labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """At most ``per_class`` validation images per class (None: all); the same for every seed."""
    if per_class is None:
        return splits.val
    rng = np.random.default_rng([splits.seed, 0x7A1])
    val = np.asarray(labels)[splits.val]
    kept = [rng.permutation(splits.val[val == c])[:per_class] for c in np.unique(val)]
    return np.sort(np.concatenate(kept))


def store_splits(splits: Splits, *, bucket: str | None = None) -> str:
    """Write ``indices.npz`` then ``manifest.json`` (last: readers see complete splits only)."""
    digest = splits.content_hash()
    root = storage.uri(PREFIX, digest, bucket=bucket)
    if storage.exists(root.child("manifest.json")):
        return digest
    buf = io.BytesIO()
    np.savez(buf, **{part: getattr(splits, part) for part in PARTS})
    data = buf.getvalue()
    manifest = {
        **splits.meta(),
        "hash": digest,
        "files": {"indices.npz": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}},
    }
    storage.put_bytes(root.child("indices.npz"), data)
    storage.put_bytes(
        root.child("manifest.json"),
        json.dumps(manifest, indent=1).encode(),
        content_type="application/json",
    )
    return digest


def load_splits(digest: str, *, bucket: str | None = None) -> Splits:
    """Read stored splits back and verify they hash to ``digest``."""
    root = storage.uri(PREFIX, safepath.hex_digest(digest, "split hash", PREFIX), bucket=bucket)
    if not storage.exists(root.child("manifest.json")):
        raise DataError(f"splits {digest} are not stored at {root}/: make and store them first")
    manifest = json.loads(storage.get_bytes(root.child("manifest.json")))
    data = storage.get_bytes(root.child("indices.npz"))
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {part: npz[part] for part in PARTS}
    splits = Splits(
        **arrays,
        dataset_hash=manifest["dataset_hash"],
        seed=manifest["seed"],
        k_shot=manifest["k_shot"],
        val_fraction=manifest["val_fraction"],
        test_fraction=manifest["test_fraction"],
        test_source=manifest["test_source"],
    )
    if splits.content_hash() != digest:
        raise DataError(
            f"splits at {root}/ do not hash to {digest[:12]}…: indices.npz or manifest.json was "
            "altered; make and store the splits again"
        )
    return splits
