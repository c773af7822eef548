"""The one canonical in-memory form of a dataset, and its content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from warmstart.errors import DataError

HASH_FORMAT = 1  # bump when the hashed layout changes


@dataclass
class ImageDataset:
    """uint8 images N×C×H×W, int64 labels 0..K-1, class names, and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    provenance: dict = field(default_factory=dict)
    predefined_test: np.ndarray | None = None  # bool mask: the source's own test split
    name: str = "dataset"

    def __post_init__(self) -> None:
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
        """sha256 over images, labels, classes and the predefined test mask (not provenance)."""
        return content_hash(self.images, self.labels, self.classes, self.predefined_test)


def content_hash(
    images: np.ndarray, labels: np.ndarray, classes: list[str], predefined_test: np.ndarray | None
) -> str:
    header = json.dumps(
        {
            "format": HASH_FORMAT,
            "images": [str(images.dtype), list(images.shape)],
            "labels": [len(labels)],
            "classes": list(classes),
            "predefined_test": predefined_test is not None,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    h = hashlib.sha256()
    h.update(len(header).to_bytes(8, "little"))
    h.update(header)
    h.update(memoryview(np.ascontiguousarray(images, dtype=np.uint8)).cast("B"))
    h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    if predefined_test is not None:
        h.update(np.ascontiguousarray(predefined_test, dtype=np.uint8).tobytes())
    return h.hexdigest()
