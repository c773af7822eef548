"""Adding a plug-in is a one-file change: this file alone registers a toy source provider, a toy
pretraining strategy and a toy transfer mode, and runs each through the real pipeline (SeaweedFS,
MLflow, Prefect) end to end; the strategy's run pretrains on a source of a toy dataset kind that
tests/unit/test_dataset_kinds.py alone registers. Nothing outside these files names them."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save

from tests.flows import configs
from tests.unit.test_dataset_kinds import Npz
from warmstart import models as M
from warmstart import storage
from warmstart.contracts import DatasetRef, Job, SourceModel
from warmstart.data import load_source, register_dataset_kind
from warmstart.data.kinds import DATASET_KINDS
from warmstart.models import get_backbone
from warmstart.models.registry import STRATEGIES, TRANSFER_MODES
from warmstart.params import PipelineParams
from warmstart.stages.sources import (
    SourceProvider,
    register_source_provider,
    unregister_source_provider,
)

pytestmark = [pytest.mark.services, pytest.mark.slow]


class RandomInitProvider(SourceProvider):
    """A source that is a seeded random-init backbone: no dataset, no training."""

    def resolve(self, label: str, dataset: DatasetRef | None, job: Job, report=None) -> SourceModel:
        torch.manual_seed(123)
        target = job.target
        model = get_backbone(
            job.params.backbone,
            in_channels=target.channels,
            num_classes=target.num_classes,
            image_size=tuple(target.size),
        )
        uri = storage.uri("test-sources", uuid.uuid4().hex, "backbone.safetensors")
        blob = save({k: v.contiguous() for k, v in model.state_dict().items()})
        storage.put_bytes(uri, blob)
        return SourceModel(
            label=label,
            provider=self.name,
            backbone=job.params.backbone,
            weights_uri=str(uri),
            channels=target.channels,
            image_size=tuple(target.size),
            provenance={"weights_sha256": hashlib.sha256(blob).hexdigest()},
        )


@dataclass(frozen=True)
class RotationConfig(M.ConfigBase):
    """The toy strategy's own hyper-parameters."""

    lr: float = 0.05
    batch: int = 32


class Rotation(M.Strategy):
    """Self-supervised toy: predict which of 4 quarter-turns an image was given."""

    config_class = RotationConfig

    def build(self) -> None:
        self.model = self.build_backbone(num_classes=4)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=self.config.lr, momentum=0.9)
        self.modules, self.optimizers = {"model": self.model}, {"sgd": self.opt}

    def train_epoch(self, x, y, *, gen, epoch):
        self.model.train()
        total = 0.0
        for _ in range(self.steps):
            idx = torch.randint(0, len(x), (self.config.batch,), generator=gen)
            turns = torch.randint(0, 4, (self.config.batch,), generator=gen)
            xb = torch.stack(
                [
                    torch.rot90(x[i].float() / 255, int(k), (1, 2))
                    for i, k in zip(idx, turns, strict=True)
                ]
            )
            loss = F.cross_entropy(self.model(xb), turns)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += loss.item()
        return {"loss": total / self.steps, "images": self.steps * self.config.batch}

    def backbone_state(self):
        return self.model.trunk_state_dict()


class NearestClassMean(M.TransferMode):
    """Frozen trunk; the head is the nearest class mean of the k-shot features (one epoch)."""

    def epochs(self, config):
        return 1

    def setup(self, run, fresh):
        M.freeze(run.model)

    def train_epoch(self, run, epoch, gen):
        x, y = run.train
        f = M.extract_features(run.model, x)
        mu = torch.stack([f[y == c].mean(0) for c in range(run.num_classes)])
        head = torch.nn.Linear(f.shape[1], run.num_classes)
        with torch.no_grad():  # argmax of -|f - mu|² = argmax of 2 f·mu - |mu|²
            head.weight.copy_(2 * mu)
            head.bias.copy_(-(mu * mu).sum(1))
        run.model.head = head
        tr, va = M.evaluate(run.model, *run.train), M.evaluate(run.model, *run.val)
        return {
            "train_loss": tr["loss"],
            "train_acc": tr["acc"],
            "val_loss": va["loss"],
            "val_acc": va["acc"],
            "images": len(x),
        }


@pytest.fixture
def toy_strategy_and_mode():
    M.register_strategy("toy-rotation")(Rotation)
    M.register_transfer_mode("toy-ncm")(NearestClassMean)
    yield "toy-rotation", "toy-ncm"
    STRATEGIES.unregister("toy-rotation")
    TRANSFER_MODES.unregister("toy-ncm")


@pytest.fixture
def npz_kind():
    register_dataset_kind("npz")(Npz)
    yield "npz"
    DATASET_KINDS.unregister("npz")


def test_a_registered_strategy_and_mode_run_end_to_end(
    stack, toy_strategy_and_mode, npz_kind, tmp_path
):
    """...on a source of a dataset kind registered in a test file alone (``npz:``, from
    tests/unit/test_dataset_kinds.py): the same images as TINY's source, ingested through it."""
    from warmstart.flows.pipeline import transfer_pipeline

    strategy, mode = toy_strategy_and_mode
    ds = load_source(configs.TINY["source"])
    np.savez(tmp_path / "source.npz", images=ds.images, labels=ds.labels)
    params = PipelineParams(
        **{
            **configs.TINY,
            "source": f"npz:{tmp_path / 'source.npz'}",
            "strategies": [strategy],
            "transfer_modes": [mode],
            "seeds": 1,
        }
    )
    summary = transfer_pipeline(params)
    row = next(r for r in summary["table"] if r["arm"] == f"{strategy}/{mode}")
    assert 0.0 < row["test_acc"] <= 1.0 and row["pretrain_seconds"] > 0
    assert summary["candidate"] == f"{strategy}/{mode}"


@pytest.fixture
def toy_provider():
    register_source_provider("toy-random")(RandomInitProvider)
    yield "toy-random"
    unregister_source_provider("toy-random")


def test_a_registered_source_provider_runs_end_to_end(stack, toy_provider):
    from warmstart.flows.pipeline import transfer_pipeline

    params = PipelineParams(**{**configs.TINY, "source": "toy-random:seed=123", "seeds": 1})
    summary = transfer_pipeline(params)
    arms = {row["arm"] for row in summary["table"]}
    assert "toy-random/linear_probe" in arms and "scratch" in arms
    # TINY has confirm_seeds=0: nothing confirmed, never promoted
    assert (summary["verdict"], summary["rule"]) == ("not promoted", "unconfirmed")
    # no source dataset was ingested: the run carries the target's hash but no source hash
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name("warmstart/uci-digits-5-9")
    parent = client.search_runs(
        [exp.experiment_id], f"tags.`warmstart.flow_run_id` = '{summary['flow_run_id']}'"
    )
    tags = next(r for r in parent if r.data.tags.get("warmstart.kind") == "pipeline").data.tags
    assert "target_dataset_hash" in tags and "source_dataset_hash" not in tags
