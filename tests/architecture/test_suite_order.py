"""The suite's heavy-first order names files that exist (a renamed file would silently lose its
place and could run alone at the end of ``make test``)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import HEAVY_FILES

ROOT = Path(__file__).resolve().parents[2]


def test_every_heavy_file_exists_and_the_makefile_keeps_the_order():
    missing = [path for path in HEAVY_FILES if not (ROOT / path).is_file()]
    assert missing == []
    assert "--no-loadscope-reorder" in (ROOT / "Makefile").read_text()
