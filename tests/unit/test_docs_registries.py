"""Every registered name of every registry is documented in docs/ARCHITECTURE.md (in
backticks): a plug-in that ships is a name a reader can look up."""

from __future__ import annotations

from pathlib import Path

import pytest

from warmstart import stages  # noqa: F401  (registers the source providers)
from warmstart.data import list_builtins
from warmstart.data.kinds import DATASET_KINDS
from warmstart.models.registry import BACKBONES, STRATEGIES, TRANSFER_MODES
from warmstart.ranking import SCORES
from warmstart.stages.sources import SOURCE_PROVIDERS

DOC = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"
REGISTRIES = {
    "backbone": BACKBONES.names,
    "strategy": STRATEGIES.names,
    "transfer mode": TRANSFER_MODES.names,
    "source provider": SOURCE_PROVIDERS.names,
    "dataset kind": DATASET_KINDS.names,
    "builtin dataset": list_builtins,
    "ranking score": SCORES.names,
}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_every_registered_name_is_documented(kind):
    text = DOC.read_text()
    names = REGISTRIES[kind]()
    assert names, kind
    assert [n for n in names if f"`{n}`" not in text] == []
