"""LEEP and NCE from the candidate's own classifier (issue 24): a dataset source pretrained with
`supervised` hands its head to the ranking (`SourceModel.head_uri`) and gets finite scores equal
to the papers' formulas on that head's softmax over the k-shot train images, from the same pass
as its features; an autoencoder (no head) still gets n/a. No services: the weights store and the
target's split are stand-ins."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from warmstart import models
from warmstart.contracts import SourceModel
from warmstart.models.features import extract, source_head
from warmstart.ranking import features, formulas
from warmstart.ranking.scores import SCORES

FAST = models.PretrainConfig(
    epochs=2, min_steps_per_epoch=2, batch_size=16, grid_images=8, num_threads=1
)


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images * 255.0 / 16.0).round().clip(0, 255).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    source = y < 5  # the source: digits 0-4; the target: digits 5-9 (labels 0-4)
    target = np.flatnonzero(~source)[:150]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(target))
    train, val, test = np.sort(order[:25]), np.sort(order[25:75]), np.sort(order[75:])
    split = SimpleNamespace(train=train, val=val, test=test, seed=0)
    ds = SimpleNamespace(images=x[target], labels=y[target] - 5)
    return x[source][:300], y[source][:300], ds, split


@pytest.fixture
def stored(monkeypatch):
    """An in-memory weights store for the `s3://` URIs the candidates name."""
    blobs: dict[str, dict[str, torch.Tensor]] = {}
    monkeypatch.setattr(features, "load_weights", lambda uri: blobs[uri])
    return blobs


@functools.cache
def pretrained(strategy: str, images: bytes, labels: bytes) -> models.PretrainResult:
    """One tiny pretraining per strategy for the whole module."""
    return models.pretrain(
        strategy,
        backbone="convnet-s",
        in_channels=1,
        image_size=(8, 8),
        images=np.frombuffer(images, np.uint8).reshape(-1, 1, 8, 8).copy(),
        labels=np.frombuffer(labels, np.int64).copy(),
        num_classes=5,
        config=FAST,
    )


def candidate(strategy, data, stored) -> SourceModel:
    images = data[0]
    result = pretrained(strategy, images.tobytes(), data[1].tobytes())
    stored[f"s3://b/{strategy}/backbone.safetensors"] = result.backbone_state
    head_uri = ""
    if result.head_state:  # as the pretrain provider stores it: head.safetensors
        head_uri = f"s3://b/{strategy}/head.safetensors"
        stored[head_uri] = result.head_state
    return SourceModel(
        label=strategy,
        provider="pretrain",
        backbone="convnet-s",
        weights_uri=f"s3://b/{strategy}/backbone.safetensors",
        channels=1,
        image_size=(8, 8),
        images=len(images),
        head_uri=head_uri,
    )


def job(data, monkeypatch):
    ds, split = data[2], data[3]
    monkeypatch.setattr(features, "load_target", lambda _job: (ds, split))
    target = SimpleNamespace(channels=1, num_classes=5, size=(8, 8))
    params = SimpleNamespace(val_per_class=None, device="cpu")
    return SimpleNamespace(target=target, params=params, source=SimpleNamespace(spec="builtin:x"))


def test_a_supervised_dataset_candidate_gets_leep_and_nce_of_its_own_head(
    data, stored, monkeypatch
):
    source = candidate("supervised", data, stored)
    scored = features.score_candidate(source, job(data, monkeypatch), "digits × supervised")
    leep, nce = scored.scores["leep"], scored.scores["nce"]
    assert leep is not None and nce is not None and np.isfinite([leep, nce]).all()
    # the formulas on the head's softmax over the k-shot TRAIN images only, computed here apart
    ds, split = data[2], data[3]
    model = features.trunk(source, job(data, monkeypatch))
    head = source_head(stored[source.head_uri], model.num_features)
    with torch.no_grad():
        x = torch.from_numpy(ds.images[split.train]).float() / 255.0
        probs = torch.softmax(head(model.eval().forward_features(x)), dim=1).numpy()
    labels = ds.labels[split.train]
    assert probs.shape == (25, 5)  # the source's five classes
    assert leep == pytest.approx(formulas.leep(probs, labels), rel=1e-5)
    assert nce == pytest.approx(formulas.nce(probs, labels), rel=1e-5, abs=1e-9)
    assert leep < 0.0 and nce <= 0.0  # log-likelihoods: 0 only for a perfect source
    assert set(scored.scores) == set(SCORES.names())


def test_a_trunk_only_candidate_keeps_n_a_for_leep_and_nce(data, stored, monkeypatch):
    source = candidate("autoencoder", data, stored)
    assert source.head_uri == ""
    scored = features.score_candidate(source, job(data, monkeypatch), "digits × autoencoder")
    assert scored.scores["leep"] is None and scored.scores["nce"] is None
    assert np.isfinite(scored.scores["knn"]) and np.isfinite(scored.scores["logme"])


def test_the_head_softmax_comes_from_the_features_pass(data, stored, monkeypatch):
    """One pass: `extract` is called once per split (train, validation), each with the head."""
    source = candidate("supervised", data, stored)
    calls = []

    def counted(backbone, images, *, head=None, batch_size=256):
        calls.append(head is not None)
        return extract(backbone, images, head=head, batch_size=batch_size)

    monkeypatch.setattr(features, "extract", counted)
    features.score_candidate(source, job(data, monkeypatch), "digits × supervised")
    assert calls == [True, True]
