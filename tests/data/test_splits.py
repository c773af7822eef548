import numpy as np
import pytest

from warmstart.data import ImageDataset, load_source, make_splits
from warmstart.errors import DataError


@pytest.fixture(scope="module")
def ds():
    return load_source("builtin:uci-digits")


def _parts(s):
    return [s.train, s.val, s.test, s.unlabelled]


def test_stratified_disjoint_and_complete(ds):
    s = make_splits(ds, seed=0)
    allidx = np.concatenate(_parts(s))
    assert len(allidx) == len(ds) == len(np.unique(allidx))
    assert len(s.unlabelled) == 0
    for c in range(10):
        n = (ds.labels == c).sum()
        assert abs((ds.labels[s.test] == c).sum() - 0.2 * n) <= 1
        assert abs((ds.labels[s.val] == c).sum() - 0.15 * n) <= 1
    assert s.dataset_hash == ds.content_hash()


def test_seeded_and_deterministic(ds):
    a, b, c = make_splits(ds, seed=1), make_splits(ds, seed=1), make_splits(ds, seed=2)
    assert a.content_hash() == b.content_hash() != c.content_hash()
    assert not np.array_equal(a.test, c.test)


def test_k_shot_keeps_val_test_and_nests(ds):
    full = make_splits(ds, seed=4)
    k1, k5 = make_splits(ds, seed=4, k_shot=1), make_splits(ds, seed=4, k_shot=5)
    for s in (k1, k5):
        np.testing.assert_array_equal(s.val, full.val)
        np.testing.assert_array_equal(s.test, full.test)
        np.testing.assert_array_equal(np.sort(np.concatenate([s.train, s.unlabelled])), full.train)
    assert np.bincount(ds.labels[k5.train]).tolist() == [5] * 10
    assert set(k1.train) <= set(k5.train)
    assert k1.content_hash() != k5.content_hash()


def test_k_larger_than_smallest_class_names_k_and_class(ds):
    sub = load_source("builtin:uci-digits?classes=0,1")
    with pytest.raises(DataError) as err:
        make_splits(sub, seed=0, k_shot=200)
    msg = str(err.value)
    assert "k_shot=200" in msg and "'0'" in msg and "k_shot<=" in msg


def test_predefined_test_split_is_the_test_set():
    images = np.zeros((40, 1, 4, 4), np.uint8)
    labels = np.arange(40) % 2
    mask = np.arange(40) >= 30
    ds = ImageDataset(images, labels, ["a", "b"], predefined_test=mask, name="t")
    s = make_splits(ds, seed=0, val_fraction=0.2)
    np.testing.assert_array_equal(s.test, np.arange(30, 40))
    assert s.test_source == "predefined"
    assert len(s.val) == 6 and np.bincount(labels[s.val]).tolist() == [3, 3]
    assert not set(s.val) & set(range(30, 40))


def test_tiny_classes_are_refused_with_the_class_named():
    ds = ImageDataset(np.zeros((5, 1, 2, 2), np.uint8), np.array([0, 0, 0, 1, 1]), ["x", "y"])
    with pytest.raises(DataError, match="'y'"):
        make_splits(ds, seed=0)
