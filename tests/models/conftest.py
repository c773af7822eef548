"""Fixtures for the pure models/ tests: one CPU thread, small real data (UCI digits, bundled with
scikit-learn, no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """UCI digits as uint8 N×1×8×8 (0..16 scaled to 0..255) and int64 labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images * 255.0 / 16.0).round().clip(0, 255).astype(np.uint8)[:, None]
    return x, d.target.astype(np.int64)


@pytest.fixture(scope="session")
def digit_split(digits):
    """(train, val, test): 20 / 20 / rest per class, fixed seed."""
    x, y = digits
    rng = np.random.default_rng(0)
    parts = [[], [], []]
    for c in range(10):
        idx = rng.permutation(np.where(y == c)[0])
        parts[0].append(idx[:20])
        parts[1].append(idx[20:40])
        parts[2].append(idx[40:])
    return tuple((x[np.concatenate(p)], y[np.concatenate(p)]) for p in parts)
