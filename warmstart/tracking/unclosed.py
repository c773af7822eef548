"""Runs that could not be ended because MLflow did not answer: remembered on local disk and ended
at the next start, not an hour later as stale.

This process knows which runs it started and has not ended (``opened``/``closed``, kept by
``runs.start_run`` and ``runs.end_run``). When ending them fails (the failure hook, a stage's
FAILED end, Ctrl-C) during an outage, ``record`` writes their ids with the status and reason they
should get to ``<state dir>/unclosed-runs.json`` (``WARMSTART_HOME``, default ``./.warmstart``).
The next ``warmstart up`` and the next pipeline run call ``close_recorded``: each recorded run
still RUNNING is ended with that status and the reason, noting that it was recorded locally.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from warmstart import safepath
from warmstart.errors import DataError
from warmstart.settings import unclosed_runs_file
from warmstart.tracking import runs
from warmstart.tracking.client import NotFound, client, errors

log = logging.getLogger(__name__)
_LOCK = threading.Lock()


def path() -> Path:
    return unclosed_runs_file()


def record(run_ids: Iterable[str], status: str, reason: str) -> list[str]:
    """Add runs to the local file (merged with what it holds); returns the ids recorded."""
    ids = sorted(set(run_ids))
    if not ids:
        return []
    when = datetime.now(UTC).isoformat(timespec="seconds")
    with _LOCK:
        entries = _read()
        for run_id in ids:
            entries[run_id] = {"status": status, "reason": reason, "recorded": when}
        _write(entries)
    log.warning(
        "MLflow unreachable: %d run(s) could not be ended; recorded in %s, the next "
        "`warmstart up` or run ends them as %s",
        len(ids),
        path(),
        status,
    )
    return ids


def close_recorded() -> list[str]:
    """End every recorded run still RUNNING with its recorded status and reason; forget those
    ended, deleted or already over. A ``TrackingError`` (MLflow still down) keeps the rest."""
    with _LOCK:
        entries = _read()
        done: list[str] = []
        try:
            for run_id, entry in entries.items():
                if _status(run_id) == "RUNNING":
                    runs.end_run(
                        run_id,
                        entry["status"],
                        reason=f"{entry['reason']}; MLflow was unreachable then, so the run was "
                        f"recorded in {path().name} ({entry['recorded']}) and ended at the next "
                        "start",
                    )
                done.append(run_id)
        finally:
            if done:
                _write({k: v for k, v in entries.items() if k not in done})
    return done


def _status(run_id: str) -> str | None:
    try:
        with errors(f"status of run {run_id}"):
            return client().get_run(run_id).info.status
    except NotFound:
        return None


def _read() -> dict[str, dict]:
    """The file's entries, checked (it is data: run ids are 32 hex digits, statuses ours)."""
    file = path()
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        raise DataError(
            f"{file} is not JSON: delete it (runs it listed close when stale)"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"{file} is not a map of run ids: delete it")
    for run_id, entry in data.items():
        safepath.hex_digest(run_id, "run id", str(file), length=32)
        if not isinstance(entry, dict) or entry.get("status") not in runs.STATUSES:
            raise DataError(f"{file}: run {run_id} has no valid status: delete the file")
        entry.setdefault("reason", "ended while MLflow was unreachable")
        entry.setdefault("recorded", "?")
    return data


def _write(entries: dict[str, dict]) -> None:
    file = path()
    if not entries:
        file.unlink(missing_ok=True)
        return
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
    os.replace(tmp, file)
