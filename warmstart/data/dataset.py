"""The one canonical form of a dataset (in memory, or its images read lazily from stored shards)
and its content hash, computable in one streaming pass."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from warmstart.errors import DataError

HASH_FORMAT = 1  # bump when the hashed layout changes


@dataclass
class ImageDataset:
    """uint8 images N×C×H×W, int64 labels 0..K-1, class names, and where they came from.

    ``images`` is a numpy array, or for large stored datasets a read-only array-like over the
    shards (``warmstart.data.shards.ShardedImages``): ``images[idx]`` reads the shards holding
    ``idx``. Such a dataset carries its verified ``known_hash``."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    provenance: dict = field(default_factory=dict)
    predefined_test: np.ndarray | None = None  # bool mask: the source's own test split
    name: str = "dataset"
    known_hash: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.in_memory:
            self.images = np.ascontiguousarray(self.images)
        self.labels = np.ascontiguousarray(self.labels, dtype=np.int64)
        self.classes = [str(c) for c in self.classes]
        if self.predefined_test is not None:
            self.predefined_test = np.ascontiguousarray(self.predefined_test, dtype=bool)
        self.validate()

    def validate(self) -> None:
        """Raise DataError unless shapes, dtypes and label range are consistent."""
        where = self.name
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise DataError(
                f"dataset {where}: images must be uint8 N×C×H×W, got {self.images.dtype} "
                f"{self.images.shape}; convert them before building an ImageDataset"
            )
        if self.images.shape[1] not in (1, 3):
            raise DataError(f"dataset {where}: {self.images.shape[1]} channels; use 1 or 3")
        if self.labels.shape != (len(self.images),):
            raise DataError(
                f"dataset {where}: {len(self.labels)} labels for {len(self.images)} images; "
                "give one label per image"
            )
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(
                f"dataset {where}: labels outside 0..{len(self.classes) - 1}; "
                "relabel to class indices"
            )
        if len(set(self.classes)) != len(self.classes):
            raise DataError(
                f"dataset {where}: duplicate class names {self.classes}; make them unique"
            )
        if self.predefined_test is not None and self.predefined_test.shape != self.labels.shape:
            raise DataError(
                f"dataset {where}: predefined_test mask length differs from the image count"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        """True when ``images`` is a numpy array (False: read from stored shards on demand)."""
        return isinstance(self.images, np.ndarray)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def counts(self) -> dict[str, int]:
        """Images per class name, in label order."""
        per = np.bincount(self.labels, minlength=self.num_classes)
        return {c: int(k) for c, k in zip(self.classes, per, strict=True)}

    def content_hash(self) -> str:
        """sha256 over images, labels, classes and the predefined test mask (not provenance);
        a shard-backed dataset streams its shards through the hash unless it knows it."""
        if self.known_hash is not None:
            return self.known_hash
        chunks = [self.images] if self.in_memory else self.images.chunks()
        return content_hash(chunks, self.labels, self.classes, self.predefined_test, self.shape)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(int(v) for v in self.images.shape)  # type: ignore[return-value]


class ContentHasher:
    """The content hash fed image rows in order, so a dataset never has to be whole in memory."""

    def __init__(
        self,
        shape: tuple[int, ...],
        labels: np.ndarray,
        classes: list[str],
        predefined_test: np.ndarray | None,
        dtype: str = "uint8",
    ) -> None:
        header = json.dumps(
            {
                "format": HASH_FORMAT,
                "images": [dtype, [int(v) for v in shape]],
                "labels": [len(labels)],
                "classes": list(classes),
                "predefined_test": predefined_test is not None,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        self.labels, self.test = labels, predefined_test
        self.h = hashlib.sha256()
        self.h.update(len(header).to_bytes(8, "little"))
        self.h.update(header)

    def update(self, images: np.ndarray) -> None:
        self.h.update(memoryview(np.ascontiguousarray(images, dtype=np.uint8)).cast("B"))

    def hexdigest(self) -> str:
        self.h.update(np.ascontiguousarray(self.labels, dtype="<i8").tobytes())
        if self.test is not None:
            self.h.update(np.ascontiguousarray(self.test, dtype=np.uint8).tobytes())
        return self.h.hexdigest()


def content_hash(
    images: np.ndarray | Iterable[np.ndarray],
    labels: np.ndarray,
    classes: list[str],
    predefined_test: np.ndarray | None,
    shape: tuple[int, ...] | None = None,
) -> str:
    """The content hash of an image array, or of its row chunks in order (then give ``shape``)."""
    dtype = "uint8"
    if isinstance(images, np.ndarray):
        shape, dtype, images = images.shape, str(images.dtype), [images]
    assert shape is not None, "give the shape when hashing chunks"
    hasher = ContentHasher(shape, labels, classes, predefined_test, dtype)
    for chunk in images:
        hasher.update(chunk)
    return hasher.hexdigest()
