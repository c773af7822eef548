"""builtin:shapes-hard (issue 16): the same shapes as builtin:shapes, smaller, lower contrast and
among heavier clutter; deterministic; builtin:shapes itself unchanged by the shared drawing code."""

from __future__ import annotations

import hashlib

import numpy as np

from warmstart.data import load_source


def _edges(images: np.ndarray) -> float:
    """Mean absolute horizontal gradient: how busy the images are."""
    return float(np.abs(np.diff(images.astype(np.int16), axis=-1)).mean())


def test_shapes_hard_is_deterministic_and_busier_than_shapes():
    a = load_source("builtin:shapes-hard?n=120&size=16x16", seed=0)
    b = load_source("builtin:shapes-hard?n=120&size=16x16", seed=0)
    easy = load_source("builtin:shapes?n=120&size=16x16", seed=0)
    assert a.images.shape == (120, 3, 16, 16) and a.classes == easy.classes
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert np.bincount(a.labels).tolist() == [12] * 10
    assert _edges(a.images) > 1.2 * _edges(easy.images)
    assert a.provenance["generator"] == "shapes-hard v1"


def test_plain_shapes_are_unchanged():
    # digest of builtin:shapes before the hard variant shared its drawing code
    ds = load_source("builtin:shapes?n=40&num_classes=5&size=20x24", seed=3)
    digest = hashlib.sha256(ds.images.tobytes() + ds.labels.tobytes()).hexdigest()[:16]
    assert digest == "edfafbbaa15f10fa"
