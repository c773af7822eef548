"""`make test` hands the heaviest test files out first (tests/conftest.py HEAVIEST_FIRST): the list
names files that exist, and the Makefile keeps xdist from reordering them and prints the slowest
tests of every run (so the list can be kept current)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import HEAVIEST_FIRST

ROOT = Path(__file__).resolve().parents[2]


def test_heaviest_first_names_existing_test_files_once():
    missing = [p for p in HEAVIEST_FIRST if not (ROOT / p).is_file()]
    assert missing == [], f"tests/conftest.py HEAVIEST_FIRST names missing files: {missing}"
    assert len(set(HEAVIEST_FIRST)) == len(HEAVIEST_FIRST)


def test_make_test_keeps_the_order_and_reports_durations():
    line = next(ln for ln in (ROOT / "Makefile").read_text().splitlines() if "-m pytest -n" in ln)
    assert "--dist loadfile" in line and "--no-loadscope-reorder" in line, line
    assert "--durations=" in line, line
