"""What ``warmstart export`` needs from MLflow: a registered version's traced graph (its pt2
artifact, loaded with ``torch.export.load``: no unpickling) and a place beside the version for
the exported files (artifacts of the version's run, and version tags with their URI and
sha256)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from warmstart.tracking.artifacts import log_bytes
from warmstart.tracking.client import client, errors, first_line
from warmstart.tracking.models import UnusableModel
from warmstart.tracking.registry import set_version_tags

if TYPE_CHECKING:
    import torch

PT2_FILE = "model.pt2"  # the name mlflow.pytorch gives a pt2 artifact (under data/)


def load_program(uri: str) -> torch.nn.Module:
    """The traced graph (``ExportedProgram.module()``) of a pt2 model at ``uri``; a pickle-format
    model is refused in one line (exporting it would mean unpickling code)."""
    import mlflow  # deferred: heavy
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        with errors(f"download of {uri}"):
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        found = sorted(local.rglob(PT2_FILE))
        if not found:
            raise UnusableModel(
                f"{uri} has no {PT2_FILE} (it was logged as pickle): re-log it with "
                "serialization='pt2' to export it"
            )
        try:
            return torch.export.load(str(found[0])).module()
        except Exception as exc:  # a pt2 archive from another torch version
            raise UnusableModel(
                f"could not load the pt2 graph of {uri} ({first_line(exc, 200)}): re-log the "
                "model with this version of torch"
            ) from None


def version_run_id(name: str, version: str) -> str:
    """The run that created a registered version (where its exports are kept)."""
    with errors(f"read of {name} version {version}"):
        run_id = client().get_model_version(name, version).run_id
    if not run_id:
        raise UnusableModel(f"{name} version {version} has no run: its exports have nowhere to go")
    return run_id


def log_export(name: str, version: str, files: Mapping[str, bytes], fmt: str, sha256: str) -> str:
    """Keep exported ``files`` (file name → bytes) as artifacts ``exports/v<version>/<fmt>/`` of
    the version's run and tag the version ``export.<fmt>.uri`` / ``export.<fmt>.sha256``.
    Returns the artifact folder's URI."""
    run_id = version_run_id(name, version)
    folder = f"exports/v{version}/{fmt}"
    for file_name, data in files.items():
        log_bytes(run_id, f"{folder}/{file_name}", data)
    where = f"runs:/{run_id}/{folder}"
    set_version_tags(name, version, {f"export.{fmt}.uri": where, f"export.{fmt}.sha256": sha256})
    return where
