"""Against the real SeaweedFS store started by the ``stack`` fixture: content-addressed storage,
hash verification, idempotent re-ingest, S3 sources and S3 failure messages."""

import io
import json

import numpy as np
import pytest

from tests.data.helpers import (
    BATCHES,
    gzip_with_flipped_pixel,
    tar_folder,
    write_cifar,
    write_tree,
)
from warmstart import storage
from warmstart.data import (
    DatasetRef,
    load_dataset,
    load_source,
    load_splits,
    make_splits,
    shards,
    store_dataset,
    store_splits,
)
from warmstart.errors import DataError, StorageError

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def bucket(stack):
    return stack.config.bucket


def _keys(prefix: storage.S3Uri) -> dict[str, object]:
    c = storage.client()
    return {
        k: c.head_object(Bucket=prefix.bucket, Key=k)["LastModified"]
        for k in storage.list_keys(prefix)
    }


def test_round_trip_and_idempotent_reingest(bucket):
    ds = load_source("builtin:shapes?n=40&num_classes=4&size=16x16", seed=11)
    ref = store_dataset(ds)
    assert isinstance(ref, DatasetRef) and ref.uploaded
    assert ref.hash == ds.content_hash() and ref.uri == f"s3://{bucket}/datasets/{ref.hash}/"
    assert (ref.count, ref.num_classes, ref.channels, ref.size) == (40, 4, 3, (16, 16))
    m = ref.manifest
    assert m["source"] == "builtin:shapes?size=16x16&n=40&num_classes=4"
    assert m["counts"] == {"circle": 10, "square": 10, "triangle": 10, "star": 10}
    assert m["shape"] == [40, 3, 16, 16] and m["hash"] == ref.hash
    json.dumps(m)  # loggable as-is
    before = _keys(storage.uri("datasets", ref.hash, bucket=bucket))
    root = f"datasets/{ref.hash}/"
    assert sorted(k.split(root, 1)[1] for k in before) == [
        "labels.npy",
        "manifest.json",
        "shards/00000.npy",
    ]

    again = store_dataset(load_source("builtin:shapes?n=40&num_classes=4&size=16x16", seed=11))
    assert not again.uploaded and again.hash == ref.hash
    assert _keys(storage.uri("datasets", ref.hash, bucket=bucket)) == before

    back = load_dataset(ref.hash)
    np.testing.assert_array_equal(back.images, ds.images)
    np.testing.assert_array_equal(back.labels, ds.labels)
    assert back.classes == ds.classes and back.name == "shapes"
    assert back.provenance["spec"] == ds.provenance["spec"]
    assert load_dataset(ref).content_hash() == ref.hash


def test_tampered_objects_are_detected_and_named(bucket):
    ds = load_source("builtin:noise?n=20&num_classes=2&size=4x4", seed=5)
    ref = store_dataset(ds)
    root = storage.uri("datasets", ref.hash, bucket=bucket)
    images = ds.images.copy()
    images[0, 0, 0, 0] ^= 1
    buf = io.BytesIO()
    np.save(buf, images)
    storage.put_bytes(root.child("shards/00000.npy"), buf.getvalue())
    with pytest.raises(DataError) as err:
        load_dataset(ref.hash)
    assert f"{root}/shards/00000.npy" in str(err.value) and "re-ingest" in str(err.value)

    # a consistent-looking forgery (objects and per-file sha256 rewritten) fails the content hash
    manifest = json.loads(storage.get_bytes(root.child("manifest.json")))
    import hashlib

    manifest["shards"]["items"][0]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    storage.put_bytes(root.child("manifest.json"), json.dumps(manifest).encode())
    with pytest.raises(DataError, match="hashes to"):
        load_dataset(ref.hash)


def test_interrupted_upload_is_invisible_and_a_rerun_resumes(bucket, monkeypatch):
    """S3 going away after two shards: no manifest (a reader sees nothing), one line saying to
    rerun; the rerun uploads only what is missing and the content is the same."""
    monkeypatch.setattr(shards, "SHARD_BYTES", 4 * 27)  # 4 RGB 3×3 images per shard: 3 shards
    ds = load_source("builtin:noise?n=10&num_classes=2&size=3x3", seed=6)
    root = storage.uri("datasets", ds.content_hash(), bucket=bucket)
    storage.put_bytes(root.child("shards/00000.npy"), b"partial")
    with pytest.raises(DataError, match="ingest it first"):
        load_dataset(ds.content_hash())

    real_put, puts = storage.put_bytes, []

    def vanishing_store(target, data, **kw):
        if len(puts) >= 2:
            raise StorageError(f"S3 store at http://127.0.0.1:1 unreachable for {target}")
        puts.append(target.key)
        return real_put(target, data, **kw)

    monkeypatch.setattr(storage, "put_bytes", vanishing_store)
    with pytest.raises(StorageError, match="interrupted .*run the same command again to resume"):
        store_dataset(ds)
    monkeypatch.setattr(storage, "put_bytes", real_put)
    with pytest.raises(DataError, match="ingest it first"):
        load_dataset(ds.content_hash())
    stored_before = set(storage.list_keys(storage.S3Uri(root.bucket, root.key + "/")))
    assert f"{root.key}/manifest.json" not in stored_before and len(stored_before) >= 2

    again: list[str] = []

    def counting_put(target, data, **kw):
        again.append(target.key)
        return real_put(target, data, **kw)

    monkeypatch.setattr(storage, "put_bytes", counting_put)
    ref = store_dataset(ds)
    assert ref.uploaded and len(ref.manifest["shards"]["items"]) == 3
    assert not set(puts) & set(again) and f"{root.key}/manifest.json" in again
    back = load_dataset(ref.hash)
    np.testing.assert_array_equal(back.images, ds.images)
    assert back.content_hash() == ds.content_hash()


def test_unknown_hash_is_named(bucket):
    with pytest.raises(DataError, match="0" * 64):
        load_dataset("0" * 64)
    with pytest.raises(DataError, match="not a dataset hash"):
        load_dataset("abc")


def test_splits_round_trip_and_tamper(bucket):
    ds = load_source("builtin:uci-digits?classes=0-3")
    s = make_splits(ds, seed=3, k_shot=2)
    digest = store_splits(s)
    assert store_splits(s) == digest == s.content_hash()
    back = load_splits(digest)
    for part in ("train", "val", "test", "unlabelled"):
        np.testing.assert_array_equal(getattr(back, part), getattr(s, part))
    assert (back.seed, back.k_shot, back.dataset_hash) == (3, 2, ds.content_hash())
    root = storage.uri("splits", digest, bucket=bucket)
    buf = io.BytesIO()
    np.savez(buf, train=s.val, val=s.train, test=s.test, unlabelled=s.unlabelled)
    storage.put_bytes(root.child("indices.npz"), buf.getvalue())
    with pytest.raises(DataError, match=digest[:12]):
        load_splits(digest)


def test_cifar_from_s3_folder_and_archive(bucket, tmp_path):
    folder = write_cifar(tmp_path, per_batch=4, seed=2)
    local = load_source(f"cifar10:{tmp_path}")
    for name in [*BATCHES, "batches.meta"]:
        storage.put_file(
            storage.uri("src/cifar/cifar-10-batches-py", name, bucket=bucket), folder / name
        )
    archive = tar_folder(folder, tmp_path / "cifar-10-python.tar.gz")
    storage.put_file(storage.uri("src/cifar-10-python.tar.gz", bucket=bucket), archive)
    from_prefix = load_source(f"cifar10:s3://{bucket}/src/cifar")
    from_tar = load_source(f"cifar10:s3://{bucket}/src/cifar-10-python.tar.gz")
    assert from_prefix.content_hash() == from_tar.content_hash() == local.content_hash()


def test_imagefolder_from_s3_matches_local(bucket, tmp_path):
    root = write_tree(tmp_path / "pets", per_class=2)
    write_tree(tmp_path / "pets2" / "train", per_class=2)
    for path in root.rglob("*.png"):
        rel = path.relative_to(root).as_posix()
        storage.put_file(storage.uri("src/pets", rel, bucket=bucket), path)
    storage.put_bytes(storage.uri("src/pets/.hidden/x.png", bucket=bucket), b"junk")
    local = load_source(f"imagefolder:{root}?size=8x8")
    remote = load_source(f"imagefolder:s3://{bucket}/src/pets?size=8x8")
    assert remote.content_hash() == local.content_hash() and remote.name == "pets"


def test_s3_source_errors_name_the_input(bucket, monkeypatch):
    for spec in ("imagefolder:s3://no-such-bucket-xyz/pets", "cifar10:s3://no-such-bucket-xyz/c"):
        with pytest.raises(StorageError) as err:
            load_source(spec)
        message = str(err.value)
        # the source's own bucket and how to fix the spec or the credentials; WARMSTART_BUCKET
        # has nothing to do with where a source is read from
        assert "'no-such-bucket-xyz'" in message and "s3://no-such-bucket-xyz/" in message
        assert "source spec" in message and "credentials" in message
        assert "WARMSTART_BUCKET" not in message
    with pytest.raises(DataError) as err:
        load_source(f"imagefolder:s3://{bucket}/nothing-here")
    assert "nothing-here" in str(err.value) and "no objects" in str(err.value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-key")
    with pytest.raises(StorageError) as err:
        load_source(f"cifar10:s3://{bucket}/src/cifar")
    assert f"s3://{bucket}/src/cifar" in str(err.value) and "credentials" in str(err.value)
    assert "wrong-secret-key" not in str(err.value)


def test_corrupt_archive_in_s3_is_named_by_its_address_and_not_stored(bucket, tmp_path):
    import gzip

    folder = write_cifar(tmp_path, per_batch=4, seed=8)
    archive = tar_folder(folder, tmp_path / "cifar.tar.gz")
    packed = gzip_with_flipped_pixel(gzip.decompress(archive.read_bytes()))
    target = storage.uri("src/corrupt/cifar-10-python.tar.gz", bucket=bucket)
    storage.put_bytes(target, packed)
    before = set(storage.list_keys(storage.uri("datasets/", bucket=bucket)))
    for spec in (f"cifar10:{target}", f"cifar10:s3://{bucket}/src/corrupt"):
        with pytest.raises(DataError) as err:
            store_dataset(load_source(spec))
        message = str(err.value)
        assert f"archive {target} is corrupt" in message and "CRC" in message
        assert "warmstart-cifar-" not in message and "/tmp" not in message
    assert set(storage.list_keys(storage.uri("datasets/", bucket=bucket))) == before


def test_imagefolder_fetch_threads_fit_the_connection_pool(bucket, tmp_path, caplog):
    from warmstart.data.imagefolder import list_s3, read_sources

    assert storage.client().meta.config.max_pool_connections >= storage.POOL_CONNECTIONS
    root = write_tree(tmp_path / "many", classes=("a", "b", "c"), per_class=40, size=(6, 6))
    for path in root.rglob("*.png"):
        rel = path.relative_to(root).as_posix()
        storage.put_file(storage.uri("src/many", rel, bucket=bucket), path)
    items = list_s3(f"s3://{bucket}/src/many")
    assert len(items) == 120
    with caplog.at_level("WARNING", logger="urllib3.connectionpool"):
        for _ in range(3):
            assert len(read_sources(items, f"s3://{bucket}/src/many")) == 120
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
