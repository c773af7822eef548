"""The run store's local cache against a real SeaweedFS: it is keyed by endpoint and bucket and
checked against S3 before use, so it can never stand in for what the bucket in use holds.

Stages here follow the pipeline's protocol (reuse ``result.json``, else pull the cache, train with
the real ``fit_target`` resuming from the pulled checkpoint, upload every epoch, weights, then the
result) on a tiny model, so each takes well under a second."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

from tests.integration.seaweed import seaweed  # noqa: F401 - fixture
from warmstart import models, storage
from warmstart.data import load_source
from warmstart.models.config import TrainConfig
from warmstart.runstore import RunStore, cache_dir, matches, store_id

pytestmark = pytest.mark.services
EPOCHS = 3


class Crash(Exception):
    """Stands in for a killed process."""


@pytest.fixture(scope="module")
def digits():
    ds = load_source("builtin:uci-digits")
    return ds.images[:80], ds.labels[:80]


def run_stage(key: str, digits, *, crash_after: int | None = None) -> dict:
    """One training stage as the pipeline runs it; returns its result plus what this call
    trained (``trained``: epochs run here; ``resumed_from``: the checkpoint epoch it started
    after)."""
    store = RunStore(key)
    done = store.finished()
    if done is not None:
        return {**done, "reused": True}
    local = store.pull()
    ckpt = local / "ckpt"
    trained: list[int] = []

    def on_epoch_end(epoch: int, metrics: dict, path: Path | None) -> None:
        trained.append(epoch)
        if path is not None:
            store.push_checkpoint_dir(ckpt)
        if epoch == crash_after:
            raise Crash

    x, y = digits
    fit = models.fit_target(
        backbone="convnet-s",
        init_state=None,
        mode="finetune",
        in_channels=1,
        image_size=(8, 8),
        num_classes=10,
        train=(x[:40], y[:40]),
        val=(x[40:], y[40:]),
        config=TrainConfig(
            epochs=EPOCHS, min_steps_per_epoch=2, batch_size=16, device="cpu", num_threads=1
        ),
        checkpoint_dir=ckpt,
        on_epoch_end=on_epoch_end,
    )
    weights = local / "model.safetensors"
    save_file({k: v.contiguous() for k, v in fit.model.state_dict().items()}, str(weights))
    store.push(weights)
    return store.finish({"trained": trained, "resumed_from": fit.resumed_from, "reused": False})


def _names(store: RunStore) -> set[str]:
    return {k[len(store.prefix.key) + 1 :] for k in storage.list_keys(store.prefix.child(""))}


def _key(name: str) -> str:
    return f"test-{name}-{os.urandom(4).hex()}"


def test_rerun_reuses_and_cache_is_keyed_by_endpoint_and_bucket(seaweed, digits):  # noqa: F811
    key = _key("reuse")
    first = run_stage(key, digits)
    assert first["trained"] == [1, 2, 3] and first["resumed_from"] is None
    again = run_stage(key, digits)
    assert again["reused"] and again["trained"] == [1, 2, 3]
    store = RunStore(key)
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    assert store.local == (
        seaweed.home / "cache" / "checkpoints" / store_id(endpoint) / store.prefix.bucket / key
    )
    assert store_id(endpoint).startswith("127.0.0.1_") and store_id(None).startswith("aws-")
    assert store_id("http://127.0.0.1:1") != store_id("http://127.0.0.1:2")


def test_another_bucket_trains_again_and_gets_its_own_checkpoints(
    seaweed,  # noqa: F811
    digits,
    monkeypatch,
):
    key = _key("bucket")
    assert run_stage(key, digits)["trained"] == [1, 2, 3]
    storage.ensure_bucket("warmstart-other")
    monkeypatch.setenv("WARMSTART_BUCKET", "warmstart-other")
    other = run_stage(key, digits)
    assert not other["reused"] and other["resumed_from"] is None
    assert other["trained"] == [1, 2, 3]
    store = RunStore(key)
    assert store.prefix.bucket == "warmstart-other"
    names = _names(store)
    assert {"ckpt/meta.json", "ckpt/epoch-003.safetensors", "model.safetensors"} <= names
    assert "result.json" in names
    assert store.local == cache_dir("warmstart-other", key) != cache_dir(seaweed.config.bucket, key)


def test_deleted_prefix_forces_a_retrain(seaweed, digits):  # noqa: F811
    key = _key("deleted")
    assert run_stage(key, digits)["trained"] == [1, 2, 3]
    store = RunStore(key)
    assert (store.local / "ckpt" / "meta.json").is_file()  # the local cache is full
    assert storage.delete_prefix(store.prefix.child("")) >= 5
    again = run_stage(key, digits)
    assert not again["reused"] and again["resumed_from"] is None
    assert again["trained"] == [1, 2, 3]


def test_corrupt_local_checkpoint_is_downloaded_again(seaweed, digits):  # noqa: F811
    key = _key("corrupt")
    with pytest.raises(Crash):
        run_stage(key, digits, crash_after=2)
    store = RunStore(key)
    local = store.local / "ckpt" / "epoch-002.safetensors"
    remote = storage.get_bytes(store.prefix.child("ckpt/epoch-002.safetensors"))
    assert local.read_bytes() == remote
    damaged = bytearray(remote)
    damaged[-100:] = bytes(100)  # same size, different tensor bytes: safetensors cannot tell
    local.write_bytes(bytes(damaged))
    stray = store.local / "ckpt" / "epoch-009.safetensors"  # a file S3 never got
    stray.write_bytes(b"x")
    store.pull()
    assert local.read_bytes() == remote and not stray.exists()
    resumed = run_stage(key, digits)
    assert resumed["resumed_from"] == 2 and resumed["trained"] == [3]


def test_large_multipart_object_is_checked_by_its_recorded_sha256(seaweed):  # noqa: F811
    store = RunStore(_key("multipart"))
    path = store.local / "big.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = np.random.default_rng(0).integers(0, 256, 9 * 2**20, dtype=np.uint8).tobytes()
    path.write_bytes(payload)
    store.push(path)
    target = store.prefix.child("big.bin")
    info = storage.head(target)
    assert info is not None and info.md5 is None  # multipart ETag: not an MD5
    assert info.sha256 is not None and matches(path, info, target)
    path.write_bytes(payload[:-1] + bytes([payload[-1] ^ 1]))
    assert not matches(path, info, target)
    store.pull()
    assert path.read_bytes() == payload


def test_checkpoint_rewritten_under_the_same_name_is_uploaded_again(seaweed):  # noqa: F811
    store = RunStore(_key("rewrite"))
    ckpt = store.local / "ckpt"
    ckpt.mkdir(parents=True)
    (ckpt / "epoch-003.safetensors").write_bytes(b"first")
    (ckpt / "meta.json").write_bytes(b"{}")
    store.push_checkpoint_dir(ckpt)
    (ckpt / "epoch-003.safetensors").write_bytes(b"again")  # epoch 3 retrained after a crash
    store.push_checkpoint_dir(ckpt)
    assert storage.get_bytes(store.prefix.child("ckpt/epoch-003.safetensors")) == b"again"


def test_checkpoints_list_the_bucket_once_per_stage(seaweed, monkeypatch):  # noqa: F811
    """Every epoch uploads what changed (meta.json last), but lists S3 only on the first."""
    from warmstart import runstore

    listed, put = [], []
    real_list, real_put = runstore.storage.list_objects, runstore.storage.put_file
    monkeypatch.setattr(
        runstore.storage, "list_objects", lambda *a, **k: listed.append(1) or real_list(*a, **k)
    )
    monkeypatch.setattr(
        runstore.storage,
        "put_file",
        lambda target, path, **k: put.append(path.name) or real_put(target, path, **k),
    )
    store = RunStore(_key("list-once"))
    ckpt = store.local / "ckpt"
    ckpt.mkdir(parents=True)
    for epoch in (1, 2, 3):
        (ckpt / f"epoch-00{epoch}.safetensors").write_bytes(f"weights {epoch}".encode())
        (ckpt / "meta.json").write_bytes(f'{{"epoch": {epoch}}}'.encode())
        store.push_checkpoint_dir(ckpt)
    assert len(listed) == 1
    assert put == [
        "epoch-001.safetensors",
        "meta.json",
        "epoch-002.safetensors",
        "meta.json",
        "epoch-003.safetensors",
        "meta.json",
    ]
    assert storage.get_bytes(store.prefix.child("ckpt/meta.json")) == b'{"epoch": 3}'
