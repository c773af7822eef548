"""Sharded storage against the real SeaweedFS: streaming ImageFolder ingestion gives the same
content hash as the in-memory path, k-shot subsets read only their shards, streamed batches
cover exactly the selected images, and bad input (a shard missing or changed, empty files, an
image over the pixel limit) is one line naming the fix."""

import json
import threading

import numpy as np
import pytest

from tests.data.helpers import write_image, write_tree
from warmstart import storage
from warmstart.data import load_dataset, load_source, open_dataset, shards, store_dataset
from warmstart.data.ingest import ingest_source
from warmstart.data.stream import batches
from warmstart.errors import DataError

pytestmark = pytest.mark.services


@pytest.fixture
def small_shards(stack, monkeypatch, tmp_path):
    """Shards of 5 images of 3×6×6 and a private local cache."""
    monkeypatch.setattr(shards, "SHARD_BYTES", 5 * 3 * 6 * 6)
    monkeypatch.setenv("WARMSTART_CACHE_DIR", str(tmp_path / "cache"))
    return stack.config.bucket


def _count_gets(monkeypatch) -> list[str]:
    gets: list[str] = []
    real = storage.get_bytes

    def counting(target):
        gets.append(target.key)
        return real(target)

    monkeypatch.setattr(storage, "get_bytes", counting)
    return gets


def test_streaming_ingest_equals_in_memory_and_streams_back(small_shards, tmp_path, monkeypatch):
    root = write_tree(tmp_path / "tree", classes=("a", "b", "c"), per_class=7, size=(6, 6))
    write_image(root / "b" / "zz.png", np.random.default_rng(1), size=(6, 6), mode="L")
    spec = f"imagefolder:{root}"
    in_memory = load_source(spec)
    ref = ingest_source(spec)
    assert ref.hash == in_memory.content_hash() and ref.count == 22
    assert len(ref.manifest["shards"]["items"]) == 5 and ref.manifest["shards"]["rows"] == 5
    assert ref.manifest["provenance"] == in_memory.provenance
    assert not ingest_source(spec).uploaded  # same content: nothing uploaded

    lazy = open_dataset(ref.hash, limit=0)
    assert not lazy.in_memory and lazy.content_hash() == ref.hash and lazy.shape == (22, 3, 6, 6)
    whole = load_dataset(ref.hash)
    np.testing.assert_array_equal(whole.images, in_memory.images)

    gets = _count_gets(monkeypatch)
    k_shot = np.array([21, 3, 4, 0])  # shards 0 and 4 only
    np.testing.assert_array_equal(lazy.images[k_shot], in_memory.images[k_shot])
    assert gets == []  # ingestion left its shards in the local cache

    loader = batches(lazy, indices=np.arange(2, 20), batch_size=4, seed=3, workers=0)
    xs, ys = zip(*loader, strict=True)
    x, y = np.concatenate(xs), np.concatenate(ys)
    order = np.argsort(
        [int(np.flatnonzero((in_memory.images == im).all((1, 2, 3)))[0]) for im in x]
    )
    np.testing.assert_array_equal(x[order], in_memory.images[2:20])
    np.testing.assert_array_equal(y[order], in_memory.labels[2:20])
    again = batches(lazy, indices=np.arange(2, 20), batch_size=4, seed=3, workers=0)
    again = np.concatenate([b[1] for b in again])
    np.testing.assert_array_equal(again, y)  # the same seed and epoch: the same order
    monkeypatch.setenv("WARMSTART_CACHE_DIR", str(tmp_path / "cold"))  # workers fetch from S3
    threads = set()
    counted = storage.get_bytes
    monkeypatch.setattr(
        storage, "get_bytes", lambda t: threads.add(threading.get_ident()) or counted(t)
    )
    spread = np.array([21, 0, 13, 7, 3, 18, 12])  # every shard: fetched in parallel, in order
    np.testing.assert_array_equal(
        open_dataset(ref.hash, limit=0).images[spread], in_memory.images[spread]
    )
    fetched = [key for key in gets if "/shards/" in key]
    assert len(fetched) == len(set(fetched)) == 5 and len(threads) > 1  # each shard once
    forked = batches(open_dataset(ref.hash, limit=0), batch_size=4, seed=3, workers=2)
    assert sorted(np.concatenate([b[1] for b in forked]).tolist()) == sorted(in_memory.labels)


def test_shard_missing_or_changed_is_named(small_shards, tmp_path, monkeypatch):
    ds = load_source("builtin:noise?n=12&num_classes=2&size=6x6&channels=3", seed=9)
    ref = store_dataset(ds)
    root = storage.parse_s3_uri(ref.uri.rstrip("/"))
    storage.put_bytes(root.child("shards/00001.npy"), shards.npy_bytes(ds.images[5:10] ^ 1))
    with pytest.raises(DataError) as err:
        open_dataset(ref.hash, limit=0).images[[7]]
    msg = str(err.value)
    assert "shards/00001.npy does not match its sha256" in msg and "re-ingest" in msg
    assert "\n" not in msg
    storage.put_bytes(root.child("shards/00001.npy"), shards.npy_bytes(ds.images[5:10]))
    storage.client().delete_object(Bucket=root.bucket, Key=root.child("shards/00002.npy").key)
    with pytest.raises(DataError, match=r"shards/00002.npy is missing from the store .*re-ingest"):
        load_dataset(ref.hash)


def test_old_single_array_layout_is_still_read(small_shards):
    ds = load_source("builtin:noise?n=7&num_classes=2&size=3x3", seed=4)
    root = storage.uri("datasets", ds.content_hash(), bucket=small_shards)
    files = {"images.npy": shards.npy_bytes(ds.images), "labels.npy": shards.npy_bytes(ds.labels)}
    for name, data in files.items():
        storage.put_bytes(root.child(name), data)
    manifest = {
        "format": 1,
        "hash": ds.content_hash(),
        "name": "noise",
        "classes": ds.classes,
        "shape": list(ds.shape),
        "files": {k: {"sha256": shards.sha256(v), "bytes": len(v)} for k, v in files.items()},
    }
    storage.put_bytes(root.child("manifest.json"), json.dumps(manifest).encode())
    back = open_dataset(ds.content_hash(), limit=0)
    assert back.in_memory and back.content_hash() == ds.content_hash()
    np.testing.assert_array_equal(back.images, ds.images)
    assert not store_dataset(ds).uploaded


def test_empty_and_oversize_files_are_refused_in_one_line(small_shards, tmp_path, monkeypatch):
    root = write_tree(tmp_path / "tree", classes=("a", "b"), per_class=3, size=(6, 6))
    (root / "a" / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.png is empty \(0 bytes; 1 such file"):
        ingest_source(f"imagefolder:{root}")
    ref = ingest_source(f"imagefolder:{root}?skip_corrupt=true")
    assert ref.count == 6 and ref.manifest["provenance"]["skipped_corrupt"] == 1
    (root / "a" / "empty.png").unlink()
    write_image(root / "b" / "huge.png", np.random.default_rng(0), size=(40, 30))
    monkeypatch.setenv("WARMSTART_MAX_IMAGE_PIXELS", "1000")
    for spec in (f"imagefolder:{root}?size=6x6", f"imagefolder:{root}?size=6x6&skip_corrupt=1"):
        with pytest.raises(DataError) as err:
            ingest_source(spec)
        assert "huge.png is 30x40 px, over the 1,000-pixel limit" in str(err.value)
        assert "raise WARMSTART_MAX_IMAGE_PIXELS" in str(err.value)
    with pytest.raises(DataError, match="over the 1,000-pixel limit"):
        load_source(f"imagefolder:{root}?size=6x6")
