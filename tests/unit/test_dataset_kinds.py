"""A dataset kind registered from this file alone: ``npz:<path>`` (arrays ``images`` N×C×H×W
uint8 and ``labels``) works everywhere by its name — the spec parser, the checks before
ingestion (class counts and k), ``load_source`` with the spec's conversions, the run's plan —
as ``tests/flows/test_plugins.py`` shows for strategies, modes and source providers, whose
strategy run also ingests and pretrains on an ``npz:`` source (no services here)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from warmstart.data import DatasetKind, load_source, parse_spec, register_dataset_kind
from warmstart.data.dataset import ImageDataset
from warmstart.data.kinds import DATASET_KINDS, ClassCounts
from warmstart.errors import ConfigError, DataError
from warmstart.params import PipelineParams
from warmstart.stages import make_plan


class Npz(DatasetKind):
    """Images and labels saved with ``numpy.savez``; classes are the label values."""

    def counts(self, spec) -> ClassCounts:
        with np.load(spec.location, allow_pickle=False) as z:
            counts = Counter(str(int(y)) for y in z["labels"])
            size = tuple(int(s) for s in z["images"].shape[2:])
        return ClassCounts(dict(sorted(counts.items())), False, size)

    def load(self, spec, *, seed, skip_corrupt, workers) -> ImageDataset:
        from warmstart.data.formats import convert

        with np.load(spec.location, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"].astype(np.int64)
        classes = [str(c) for c in sorted(set(labels.tolist()))]
        index = {int(c): i for i, c in enumerate(classes)}
        ds = ImageDataset(images, np.array([index[int(y)] for y in labels]), classes)
        return convert(ds, spec)


@pytest.fixture
def npz_kind():
    register_dataset_kind("npz")(Npz)
    yield "npz"
    DATASET_KINDS.unregister("npz")


def write_npz(path, per_class: int = 20, classes: int = 3, size: int = 8):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(classes), per_class)
    images = rng.integers(0, 255, (len(labels), 1, size, size), dtype=np.uint8)
    np.savez(path, images=images, labels=labels)
    return path


def test_a_kind_from_one_file_parses_loads_and_converts(npz_kind, tmp_path):
    path = write_npz(tmp_path / "set.npz")
    spec = parse_spec(f"npz:{path}?size=16x16&classes=0,2&channels=3")
    ds = load_source(spec)
    assert (ds.channels, ds.size, ds.classes, len(ds)) == (3, (16, 16), ["0", "2"], 40)
    assert ds.provenance["kind"] == "npz" and ds.provenance["seed"] is None
    with pytest.raises(DataError, match="n= applies to builtin:shapes and builtin:noise only"):
        load_source(f"npz:{path}?n=5")


def test_the_plan_counts_its_classes_and_checks_k(npz_kind, tmp_path):
    path = write_npz(tmp_path / "set.npz")
    plan = make_plan(PipelineParams(source=f"npz:{path}", target=f"npz:{path}", k_shot=13))
    assert plan.source.provider == "pretrain" and plan.source.needs_dataset
    with pytest.raises(ConfigError, match=r"^--k-shot 14 is larger .* use --k-shot 13 or less"):
        make_plan(PipelineParams(target=f"npz:{path}", k_shot=14))  # 20 - 3 test - 3 val
    with pytest.raises(ConfigError, match="does not exist; check the path"):
        make_plan(PipelineParams(target=f"npz:{tmp_path}/none.npz"))


def test_an_unregistered_kind_is_refused_naming_the_registered_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown source kind 'npz'; use builtin:, cifar10: or"):
        make_plan(PipelineParams(target=f"npz:{tmp_path}/set.npz"))
