"""Pretraining batch sources without services: the streamed source over stored shards (served
from a local shard cache, so no S3 is needed) and the in-memory source's order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from warmstart import models as M
from warmstart.data import stream
from warmstart.data.dataset import ImageDataset
from warmstart.data.shards import ShardCache, ShardedImages, ShardIndex, npy_bytes, sha256
from warmstart.data.streamed import StreamedBatches, rebatch
from warmstart.models.augment import batch_indices
from warmstart.models.batches import ArrayBatches, BatchSource
from warmstart.models.registry import STRATEGIES

ROWS = 10  # images per shard


def sharded(tmp_path, n: int, side: int = 2) -> ImageDataset:
    """n 1×side×side images whose first pixel is the image's index mod 256 (labels: index mod
    7), stored as cached shards of ROWS rows: fetch_shard finds each in the cache, never in S3."""
    images = np.random.default_rng(0).integers(0, 255, (n, 1, side, side), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256
    cache = ShardCache(tmp_path / "cache", budget=2**30)
    digests = []
    for start in range(0, n, ROWS):
        data = npy_bytes(images[start : start + ROWS])
        digests.append(sha256(data))
        cache.put(digests[-1], data)
    index = ShardIndex(
        root="s3://nowhere/datasets/test",
        shape=images.shape,
        rows=ROWS,
        keys=tuple(f"shards/{i:05d}.npy" for i in range(len(digests))),
        digests=tuple(digests),
    )
    labels = np.arange(n) % 7
    return ImageDataset(
        ShardedImages(index, cache), labels, [str(c) for c in range(7)], known_hash="f" * 64
    )


def test_a_streamed_epoch_yields_every_example_once_reading_at_most_mix_shards_ahead(
    tmp_path, monkeypatch
):
    n, mix, size = 95, 2, 8
    ds = sharded(tmp_path, n)
    fetched: list[int] = []
    real_fetch = stream.fetch_shard
    monkeypatch.setattr(
        stream,
        "fetch_shard",
        lambda index, i, cache: fetched.append(i) or real_fetch(index, i, cache),
    )
    source = StreamedBatches(ds, labelled=True, workers=0, mix=mix)
    assert isinstance(source, BatchSource) and source.num_examples == n
    steps = -(-n // size)
    seen: list[int] = []
    for xb, yb in source.epoch(torch.Generator().manual_seed(3), size, steps):
        seen += xb[:, 0, 0, 0].tolist()
        assert yb.tolist() == [ds.labels[i] for i in xb[:, 0, 0, 0].tolist()]
        done = {i // ROWS for i in seen}  # shards some of whose images were yielded
        finished = {
            s for s in done if all(j in seen for j in range(s * ROWS, min(n, s * ROWS + ROWS)))
        }
        assert len(set(fetched) - finished) <= mix, "read more than the window ahead"
    assert sorted(seen) == list(range(n))  # each image exactly once
    assert len(seen) == n and len(set(fetched)) == len(fetched) == -(-n // ROWS)
    assert seen != sorted(seen)  # shuffled


def test_streamed_epochs_are_seeded_by_the_generator_and_continue_past_one_pass(tmp_path):
    ds = sharded(tmp_path, 30)
    source = StreamedBatches(ds, labelled=False, workers=0, mix=2)

    def run(seed: int, steps: int) -> tuple[list[list[int]], torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        batches = source.epoch(gen, 8, steps)
        after = gen.get_state()  # drawn when the epoch starts, not while it is consumed
        out = [xb[:, 0, 0, 0].tolist() for xb, yb in batches if yb is None]
        return out, after

    a, state_a = run(1, 6)
    b, state_b = run(1, 6)
    assert a == b and torch.equal(state_a, state_b)
    assert a != run(2, 6)[0]
    assert [len(x) for x in a] == [8, 8, 8, 6, 8, 8]  # a pass ends short, the next starts
    assert sorted(sum(a[:4], [])) == list(range(30))
    assert source.labels is None


def test_extra_images_are_mixed_into_every_pass_once(tmp_path):
    ds = sharded(tmp_path, 40)
    extra = np.zeros((13, 1, 2, 2), np.uint8)
    extra[:, 0, 0, 0] = 200 + np.arange(13)  # told apart from the dataset's 0..39
    source = StreamedBatches(ds, labelled=False, workers=0, extra=extra, extra_id="pool")
    assert source.num_examples == 53 and source.fingerprint.endswith("+pool")
    seen = [
        v for xb, _ in source.epoch(torch.Generator().manual_seed(5), 8, 7) for v in xb[:, 0, 0, 0]
    ]
    assert sorted(int(v) for v in seen) == [*range(40), *range(200, 213)]
    firsts = [int(v) for v in source.take(torch.tensor([0, 39, 40, 52]))[:, 0, 0, 0]]
    assert firsts == [int(ds.images[0][0, 0, 0]), int(ds.images[39][0, 0, 0]), 200, 212]


def test_the_in_memory_source_draws_exactly_the_old_order():
    x = torch.arange(37, dtype=torch.uint8).view(37, 1, 1, 1)
    y = torch.arange(37) % 5
    gen, ref = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    batches = ArrayBatches(x, y).epoch(gen, 16, 5)
    idx = batch_indices(37, 16, 5, ref)  # what every strategy drew before batch sources
    assert torch.equal(gen.get_state(), ref.get_state())  # drawn eagerly, nothing more
    got = list(batches)
    assert len(got) == 5
    for (xb, yb), b in zip(got, idx, strict=True):
        assert torch.equal(xb, x[b]) and torch.equal(yb, y[b])


@pytest.mark.parametrize("size", [1, 4, 7])
def test_rebatch_cuts_pieces_into_full_batches_in_order(size):
    pieces = [(torch.arange(a, b), torch.arange(a, b)) for a, b in [(0, 3), (3, 4), (4, 13)]]
    out = list(rebatch(pieces, size))
    assert torch.cat([x for x, _ in out]).tolist() == list(range(13))
    assert all(len(x) == size for x, _ in out[:-1]) and 0 < len(out[-1][0]) <= size


@pytest.mark.parametrize("strategy", ["supervised", "autoencoder", "gan"])
def test_pretraining_runs_on_a_streamed_source(tmp_path, strategy):
    ds = sharded(tmp_path, 45, side=8)
    source = StreamedBatches(ds, labelled=strategy == "supervised", workers=0)
    cfg = M.PretrainConfig(epochs=1, batch_size=16, min_steps_per_epoch=1, grid_images=8)
    result = M.pretrain(
        strategy, backbone="convnet-s", in_channels=1, image_size=(8, 8), images=source, config=cfg
    )
    assert result.history[0]["epoch"] == 1 and np.isfinite(result.history[0]["loss"])
    assert result.images_per_second > 0 and result.backbone_state
    assert all(a.dtype == np.uint8 and a.ndim == 3 for a in result.artifacts.values())


class ArraysOnly(M.Strategy):
    """A plugin written for whole arrays (``train_epoch``)."""

    def build(self) -> None:
        self.model = self.build_backbone(num_classes=0)

    def train_epoch(self, x, y, *, gen, epoch):
        return {"loss": 0.0, "images": len(x)}

    def backbone_state(self):
        return self.model.trunk_state_dict()


@pytest.fixture
def arrays_only():
    M.register_strategy("test-arrays-only")(ArraysOnly)
    yield
    STRATEGIES.unregister("test-arrays-only")


def test_a_strategy_for_arrays_refuses_a_streamed_source_in_one_line(tmp_path, arrays_only):
    source = StreamedBatches(sharded(tmp_path, 20, side=8), labelled=False, workers=0)
    with pytest.raises(M.ModelError, match="implements train_epoch .* streamed"):
        M.pretrain(
            "test-arrays-only",
            backbone="convnet-s",
            in_channels=1,
            image_size=(8, 8),
            images=source,
            config=M.PretrainConfig(epochs=1),
        )
    # and it still trains on arrays, as before
    arrays = np.zeros((20, 1, 8, 8), np.uint8)
    done = M.pretrain(
        "test-arrays-only",
        backbone="convnet-s",
        in_channels=1,
        image_size=(8, 8),
        images=arrays,
        config=M.PretrainConfig(epochs=1),
    )
    assert done.history[0]["loss"] == 0.0
