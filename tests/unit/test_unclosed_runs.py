"""The local record of MLflow runs an outage left open (issue 22): what the failure hook writes
when it cannot reach MLflow, checked when read back (it is data, like anything on disk)."""

from __future__ import annotations

import json

import pytest

from warmstart import settings
from warmstart.errors import DataError
from warmstart.tracking import unclosed


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WARMSTART_HOME", str(tmp_path))
    return tmp_path


def test_record_merges_runs_with_their_status_and_reason(home):
    assert unclosed.record([], "FAILED", "nothing") == []
    assert not settings.unclosed_runs_file().exists()
    a, b = "a" * 32, "b" * 32
    assert unclosed.record([a, a], "FAILED", "flow run failed: S3 down") == [a]
    assert unclosed.record([b], "KILLED", "interrupted") == [b]
    data = json.loads((home / "unclosed-runs.json").read_text())
    assert {k: (v["status"], v["reason"]) for k, v in data.items()} == {
        a: ("FAILED", "flow run failed: S3 down"),
        b: ("KILLED", "interrupted"),
    }


@pytest.mark.parametrize(
    "content, match",
    [
        ("not json", "is not JSON"),
        ("[]", "is not a map of run ids"),
        ('{"../../x": {"status": "FAILED"}}', "run id '../../x' is not 32 lowercase hex"),
        ('{"' + "c" * 32 + '": {"status": "DELETED"}}', "has no valid status"),
    ],
)
def test_a_tampered_record_is_refused_in_one_line(home, content, match):
    settings.unclosed_runs_file().write_text(content)
    with pytest.raises(DataError, match=match):
        unclosed.close_recorded()


def test_nothing_recorded_closes_nothing(home):
    assert unclosed.close_recorded() == []
