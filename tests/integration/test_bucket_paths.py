"""Bucket contents never become a local path or an object key unchecked (issue 22, item 1): each
attack is a file written with the bucket keys (a weights ``meta.json``, a dataset manifest, a
stage's objects, a checkpoint's ``meta.json``, a ``learned.json``), against a real SeaweedFS and
real folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.integration.seaweed import seaweed  # noqa: F401 - fixture
from warmstart import safepath, settings, storage, weights
from warmstart.data import ImageDataset, open_dataset, shards, store_dataset
from warmstart.errors import ConfigError, DataError
from warmstart.models.checkpoint import FORMAT, CheckpointError, load_checkpoint
from warmstart.runstore import RunStore
from warmstart.stages.sources import read_learned
from warmstart.stages.sources_checkpoint import find_checkpoint

pytestmark = pytest.mark.services
PAYLOAD = b"#!/bin/sh\necho owned\n"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _evil_weights(name: str, file_name: str, sha256: str = SHA) -> None:
    """What anyone with the bucket keys can write: a user's weights whose meta.json names a file
    outside the local weights folder, with the payload's real sha256."""
    prefix = weights.user_prefix(name)
    target = prefix.child("payload.sh")
    storage.put_bytes(target, PAYLOAD)
    meta = {
        "name": name,
        "arch": "resnet18",
        "enum": None,
        "sha256": sha256,
        "size": len(PAYLOAD),
        "file_name": file_name,
        "uri": str(target),
    }
    storage.put_bytes(prefix.child(weights.META), json.dumps(meta).encode())


def test_weights_meta_naming_a_path_outside_is_refused_through_fetch(seaweed):  # noqa: F811
    escape = settings.state_dir().parent / "elsewhere" / "x.sh"
    _evil_weights("evil", "../../../elsewhere/x.sh")
    with pytest.raises(DataError, match=r"weights/user/evil/meta.json: file_name .* not a plain"):
        weights.fetch("resnet18", "evil")  # the path `torchvision:resnet18?weights=evil` takes
    assert not escape.exists() and not escape.parent.exists()
    _evil_weights("evil-hash", "x.sh", sha256="../../../elsewhere")
    with pytest.raises(DataError, match="sha256 '../../../elsewhere' is not 64 lowercase hex"):
        weights.fetch("resnet18", "evil-hash")
    assert not escape.parent.exists()


def test_weights_meta_whose_uri_is_not_beside_it_is_refused(seaweed):  # noqa: F811
    _evil_weights("elsewhere-uri", "payload.sh")
    prefix = weights.user_prefix("elsewhere-uri")
    meta = json.loads(storage.get_bytes(prefix.child(weights.META)))
    storage.put_bytes(
        prefix.child(weights.META),
        json.dumps({**meta, "uri": str(storage.uri("datasets", "x", "payload.sh"))}).encode(),
    )
    with pytest.raises(ConfigError, match="is not payload.sh beside it"):
        weights.fetch("resnet18", "elsewhere-uri")


def test_shard_digest_naming_a_path_outside_the_cache_is_refused(seaweed, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(shards, "SHARD_BYTES", 4 * 3 * 6 * 6)
    monkeypatch.setenv("WARMSTART_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    ds = ImageDataset(
        images=rng.integers(0, 255, (12, 3, 6, 6), dtype=np.uint8),
        labels=np.arange(12) % 2,
        classes=["a", "b"],
        name="tiny",
    )
    ref = store_dataset(ds)
    victim = tmp_path / "victim.npy"  # before: the cache read it, found it "damaged", deleted it
    victim.write_bytes(b"keep me")
    root = storage.parse_s3_uri(ref.uri.rstrip("/"))
    manifest = json.loads(storage.get_bytes(root.child("manifest.json")))
    manifest["shards"]["items"][0]["sha256"] = "../../victim"
    storage.put_bytes(root.child("manifest.json"), json.dumps(manifest).encode())
    with pytest.raises(DataError, match=r"manifest.json: shard sha256 '../../victim' is not 64"):
        open_dataset(ref.hash, limit=0)
    manifest["shards"]["items"][0]["sha256"] = "0" * 64
    manifest["shards"]["items"][0]["key"] = "shards/../../../other/00000.npy"
    storage.put_bytes(root.child("manifest.json"), json.dumps(manifest).encode())
    with pytest.raises(DataError, match="shard key .* is not a relative key of plain names"):
        open_dataset(ref.hash, limit=0)
    manifest["files"] = {"../labels.npy": {"sha256": "0" * 64}}
    storage.put_bytes(root.child("manifest.json"), json.dumps(manifest).encode())
    with pytest.raises(DataError, match="file '../labels.npy' is not a plain file name"):
        open_dataset(ref.hash)
    assert victim.read_bytes() == b"keep me"


def test_stage_objects_cannot_be_pulled_outside_the_cache(seaweed, monkeypatch):  # noqa: F811
    store = RunStore("finetune-evil")
    storage.put_bytes(store.prefix.child("ckpt/meta.json"), b"{}")
    real = store._remote()
    assert set(real) == {"ckpt/meta.json"}
    # S3 (AWS) keeps ".." and "//" in keys as they are: a listing may return them
    info = real["ckpt/meta.json"]
    for rel in ("../../../escape.txt", "/tmp/escape.txt", "ckpt//x"):
        monkeypatch.setattr(RunStore, "_remote", lambda self, rel=rel: {rel: info})
        with pytest.raises(DataError, match="object key .* is not a relative key"):
            store.pull()
    assert not (store.local.parent.parent.parent / "escape.txt").exists()


def test_checkpoint_meta_cannot_name_a_file_outside_its_folder(tmp_path):
    outside = tmp_path / "outside.safetensors"
    save_file({"w": torch.zeros(2)}, str(outside))
    folder = tmp_path / "ckpt"
    folder.mkdir()
    meta = {"format": FORMAT, "epoch": 1, "weights": "../outside.safetensors", "state": None}
    (folder / "meta.json").write_text(json.dumps(meta))
    spec = f"checkpoint:{folder}"
    with pytest.raises(ConfigError, match=r"weights '../outside.safetensors' .* not an epoch-NNN"):
        find_checkpoint(spec, str(folder))
    (folder / "meta.json").write_text(json.dumps({**meta, "weights": "epoch-001.safetensors"}))
    assert find_checkpoint(spec, str(folder))[1] == f"{folder}/epoch-001.safetensors"
    bad_best = {**meta, "weights": "epoch-001.safetensors", "best_epoch": "../x"}
    (folder / "meta.json").write_text(json.dumps(bad_best))
    with pytest.raises(ConfigError, match="best_epoch '../x' .* is not an epoch number"):
        find_checkpoint(spec, str(folder))
    save_file({"w": torch.zeros(2)}, str(folder / "epoch-001.safetensors"))
    state = {**meta, "weights": "epoch-001.safetensors", "state": "../outside.safetensors"}
    (folder / "meta.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="state '../outside.safetensors' .* not an epoch"):
        load_checkpoint(folder)


def test_learned_json_hashes_must_be_hashes():
    good = [{"what": "labels", "dataset_hash": "a" * 64, "split_hash": "b" * 64}]
    assert read_learned(json.dumps(good).encode())[0].split_hash == "b" * 64
    bad = [{**good[0], "split_hash": "../datasets/" + "a" * 64}]
    with pytest.raises(DataError, match="learned.json: split_hash .* is not 64 lowercase hex"):
        read_learned(json.dumps(bad).encode())


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "x\0y", "..x"])
def test_file_names_refused(name):
    with pytest.raises(DataError, match="not a plain file name"):
        safepath.file_name(name, "file_name", "meta.json")


def test_inside_follows_symlinks(tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    (root / "link").symlink_to(out)
    assert safepath.inside(root, "a.txt", what="f", where="w") == root.resolve() / "a.txt"
    with pytest.raises(DataError, match=f"leads outside {root.resolve()}"):
        safepath.inside(root, "link", "a.txt", what="f", where="w")
    assert Path(safepath.hex_digest("0" * 64, "h", "w")).name == "0" * 64
