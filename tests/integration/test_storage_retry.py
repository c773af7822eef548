"""S3 calls against a real SeaweedFS that goes away: a restart inside the retry window is ridden
out, a longer outage ends in one StorageError naming the endpoint and the fix, and errors that
cannot heal (bad credentials, a missing bucket) fail at once."""

from __future__ import annotations

import os
import threading
import time

import pytest

from tests.integration.seaweed import seaweed  # noqa: F401 - fixture
from warmstart import outage, storage
from warmstart.errors import StorageError

pytestmark = pytest.mark.services


def test_retry_window_setting(monkeypatch):
    monkeypatch.delenv(storage.RETRY_ENV, raising=False)
    assert storage.retry_window() >= 60
    monkeypatch.setenv(storage.RETRY_ENV, "2.5")
    assert storage.retry_window() == 2.5
    monkeypatch.setenv(storage.RETRY_ENV, "soon")
    with pytest.raises(StorageError, match="WARMSTART_IO_RETRY_SECONDS='soon'"):
        storage.retry_window()


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise AssertionError(what)


def _steps(base: storage.S3Uri, payload: bytes, src, dest) -> list:
    """Every operation the project uses, each checked, on objects under ``base``."""
    return [
        ("put_bytes", lambda: storage.put_bytes(base.child("a"), payload)),
        ("get_bytes", lambda: _check(storage.get_bytes(base.child("a")) == payload, "get")),
        ("put_file", lambda: storage.put_file(base.child("b"), src)),
        ("download_file", lambda: storage.download_file(base.child("b"), dest)),
        ("list_objects", lambda: _check(len(storage.list_objects(base.child(""))) == 2, "list")),
        ("exists", lambda: _check(storage.exists(base.child("a")), "exists")),
    ]


def _series(stop: threading.Event, log: list, errors: list, tmp_path) -> None:
    """Round after round of calls until ``stop``; the first error ends it."""
    payload = os.urandom(70_000)
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    i = 0
    while not stop.is_set():
        for name, step in _steps(storage.uri(f"retry/{i}"), payload, src, tmp_path / "dl"):
            t0 = time.monotonic()
            try:
                step()
            except Exception as exc:  # recorded: the test fails on any error
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                return
            log.append((name, t0, time.monotonic()))
        i += 1


def test_calls_ride_out_a_20_second_restart(seaweed, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.delenv(storage.RETRY_ENV, raising=False)  # the default window
    stop, log, errors = threading.Event(), [], []
    worker = threading.Thread(target=_series, args=(stop, log, errors, tmp_path), daemon=True)
    worker.start()
    time.sleep(1.0)
    seaweed.stop()
    down = time.monotonic()
    time.sleep(20)
    restart = time.monotonic()  # a call may succeed while `start` still waits for the health check
    seaweed.start()
    up = time.monotonic()
    deadline = up + 60
    while time.monotonic() < deadline and not errors:
        if sum(1 for _, t0, _ in log if t0 > up) >= 12:  # two full rounds after the restart
            break
        time.sleep(0.2)
    stop.set()
    worker.join(timeout=90)
    assert not errors, errors
    spanning = [(name, t1 - t0) for name, t0, t1 in log if t0 < down + 1 and t1 > restart]
    assert spanning, "no call was in flight across the outage"
    print(f"S3 down {restart - down:.1f} s; longest call {max(d for _, d in spanning):.1f} s")
    assert max(d for _, d in spanning) >= 19
    assert sum(1 for _, t0, _ in log if t0 > up) >= 12
    assert sum(1 for _, t0, _ in log if t0 < down) >= 6  # it was working before the outage


def test_outage_longer_than_the_window_is_one_clear_error(seaweed, monkeypatch):  # noqa: F811
    target = storage.uri("retry/gone")
    storage.put_bytes(target, b"x")
    monkeypatch.setenv(storage.RETRY_ENV, "3")
    seaweed.stop()
    try:
        t0 = time.monotonic()
        with pytest.raises(StorageError) as err:
            storage.get_bytes(target)
        waited = time.monotonic() - t0
        with pytest.raises(StorageError, match="retried for [3-9] s of the 3 s budget"):
            storage.put_bytes(target, b"y")  # the same outage: its budget is spent already
        second = time.monotonic() - t0 - waited
    finally:
        seaweed.start()
    message = str(err.value)
    assert 3 <= waited < 10
    assert second < 4, second  # one attempt (botocore's own quick retries), no second window
    assert "\n" not in message and os.environ["AWS_ENDPOINT_URL"] in message
    assert str(target) in message and "warmstart up" in message
    assert storage.RETRY_ENV in message and "retried for 3 s of the 3 s budget" in message
    # back: the first success ends the outage. SeaweedFS may answer InternalError for a moment
    # after its health check passes, so this read gets the default window, not the spent 3 s.
    monkeypatch.delenv(storage.RETRY_ENV)
    assert storage.get_bytes(target) == b"x"
    assert outage.S3.since() is None


def test_errors_that_cannot_heal_fail_at_once(seaweed, monkeypatch):  # noqa: F811
    monkeypatch.delenv(storage.RETRY_ENV, raising=False)
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="does not exist at"):
        storage.list_objects(storage.S3Uri("no-such-bucket-for-retry", "x/"))
    with pytest.raises(StorageError, match="does not exist in the S3 store"):
        storage.get_bytes(storage.uri("retry/never-written"))
    assert not storage.exists(storage.uri("retry/never-written"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    for call in (
        lambda: storage.get_bytes(storage.uri("retry/x")),
        lambda: storage.put_bytes(storage.uri("retry/x"), b"x"),
        lambda: storage.put_file(storage.uri("retry/x"), __file__),
    ):
        with pytest.raises(StorageError, match="refused the credentials") as err:
            call()
        assert "wrong-secret" not in str(err.value)
    assert time.monotonic() - t0 < 5
