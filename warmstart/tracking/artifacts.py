"""Artifacts and dataset inputs of a run, by explicit run id (safe from parallel threads)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from warmstart.contracts import DatasetRef, SplitRef
from warmstart.reports.plots import figure_png
from warmstart.settings import bucket, redact
from warmstart.tracking.client import client, errors

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DIGEST_LENGTH = 32  # MLflow keeps dataset digests short (at most 36 characters)


def log_bytes(run_id: str, artifact_file: str, data: bytes) -> None:
    """``data`` as the artifact ``artifact_file`` (``dir/name.ext``) of the run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_bytes(data)
        folder = str(Path(artifact_file).parent)
        with errors(f"upload of {artifact_file} to run {run_id}"):
            client().log_artifact(run_id, str(path), None if folder == "." else folder)


def log_text(run_id: str, artifact_file: str, text: str) -> None:
    """A text artifact (Markdown, JSON …) with secret values replaced by ``***``."""
    log_bytes(run_id, artifact_file, redact(text).encode())


def log_figure(run_id: str, artifact_file: str, figure: Figure) -> None:
    """A matplotlib figure (``warmstart.reports.plots`` builds them) as a PNG artifact."""
    log_bytes(run_id, artifact_file, figure_png(figure))


def _dataset_entity(ref: DatasetRef | SplitRef):
    """A ``MetaDataset`` (metadata only: cheap for large image sets) with the source type its
    URI says (``s3://`` → s3) and our content hash as the digest."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source  # deferred: heavy
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import Schema, TensorSpec

    if isinstance(ref, DatasetRef):
        uri, name = ref.uri.rstrip("/") + "/", ref.name
        shape = (-1, ref.channels, *ref.size)
        schema = Schema([TensorSpec(np.dtype("uint8"), shape, "images")])
    else:
        uri, name, schema = f"s3://{bucket()}/splits/{ref.hash}/", f"split-k{ref.k_shot}", None
    dataset = MetaDataset(
        source=resolve_dataset_source(uri),
        name=name,
        digest=ref.hash[:DIGEST_LENGTH],
        schema=schema,
    )
    return dataset._to_mlflow_entity()


def log_dataset_inputs(run_id: str, datasets: Mapping[str, DatasetRef | SplitRef]) -> None:
    """Each dataset or split as an input of the run; the key is its context (``source``,
    ``target``, ``split``…). The full content hash is the input tag ``warmstart.hash``."""
    from mlflow.entities import DatasetInput, InputTag  # deferred: heavy
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = []
    for context, ref in datasets.items():
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, context), InputTag("warmstart.hash", ref.hash)]
        if isinstance(ref, DatasetRef):
            tags.append(InputTag("warmstart.spec", redact(ref.spec)))
        inputs.append(DatasetInput(dataset=_dataset_entity(ref), tags=tags))
    if inputs:
        with errors(f"log_inputs on run {run_id}"):
            client().log_inputs(run_id, datasets=inputs)
