"""Names read from the bucket, an archive or a folder are data until checked here.

A ``meta.json``, a manifest, a ``result.json`` or an object listing is written by whoever holds
the bucket keys, so a field that becomes part of a local path or an object key is checked first:

- ``hex_digest``: a content hash is lowercase hex of the expected length (sha256: 64);
- ``file_name``: one plain file name (no separator, no ``..``, no NUL, not empty);
- ``relative_key``: a relative object key of plain names joined by ``/``;
- ``inside``: a local path joined from a folder and such names resolves (symlinks followed)
  to a place inside that folder.

Each refusal is a ``DataError`` naming the field, where it was read and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path

from warmstart.errors import DataError

_HEX = re.compile(r"[0-9a-f]+")


def _refuse(value: object, what: str, where: str, why: str) -> DataError:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "…"
    return DataError(
        f"{where}: {what} {shown} {why}; it was altered or not written by warmstart: delete it "
        "and write it again (e.g. re-add the weights, re-ingest the dataset, rerun the stage)"
    )


def hex_digest(value: object, what: str, where: str, length: int = 64) -> str:
    """``value`` when it is ``length`` lowercase hex digits (a sha256 by default)."""
    if not isinstance(value, str) or len(value) != length or not _HEX.fullmatch(value):
        raise _refuse(value, what, where, f"is not {length} lowercase hex digits")
    return value


def file_name(value: object, what: str, where: str) -> str:
    """``value`` when it is one plain file name: no ``/`` or ``\\``, not ``.``/``..``, no NUL."""
    if (
        not isinstance(value, str)
        or value in ("", ".", "..")
        or any(c in value for c in "/\\\0")
        or value.startswith("..")
    ):
        raise _refuse(value, what, where, "is not a plain file name")
    return value


def relative_key(value: object, what: str, where: str) -> str:
    """``value`` when it is plain names joined by ``/`` (no leading ``/``, no empty, ``.`` or
    ``..`` part): an object key below a prefix, or a relative path below a folder."""
    if not isinstance(value, str) or not value:
        raise _refuse(value, what, where, "is not a relative key")
    for part in value.split("/"):
        try:
            file_name(part, what, where)
        except DataError:
            raise _refuse(value, what, where, "is not a relative key of plain names") from None
    return value


def inside(root: Path, *parts: str, what: str, where: str) -> Path:
    """``root / parts…`` once it resolves (symlinks followed) inside ``root``."""
    base = Path(root).resolve()
    path = base.joinpath(*parts)
    if not path.resolve().is_relative_to(base):
        raise _refuse("/".join(parts), what, where, f"leads outside {base}")
    return path
