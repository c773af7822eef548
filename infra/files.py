"""The state folder is private: folders 0700, files 0600, written atomically where they hold
secrets. Child processes start with umask 077 (see processes.spawn), so what they create is
private too; ``make_private`` fixes whatever an older version or another tool left open."""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; an existing folder is set to 0700."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    for folder in (path, *missing):
        os.chmod(folder, DIR_MODE)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with mode 0600, atomically (a reader never sees half a file)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)
    return path


def open_private_log(path: Path):
    """Open a log for appending (binary), created with mode 0600."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    os.chmod(path, FILE_MODE)
    return os.fdopen(fd, "ab")


def make_private(home: Path) -> int:
    """chmod the state folder: folders 0700, everything else 0600; links are left alone.

    Returns how many modes changed (0 when everything was already private).
    """
    changed = 0
    if not home.exists():
        return changed
    for root, _dirs, files in os.walk(home):
        changed += _chmod(Path(root), DIR_MODE)
        for name in files:  # symlinked folders are listed in `dirs` and never walked
            changed += _chmod(Path(root, name), FILE_MODE)
    return changed


def _chmod(path: Path, mode: int) -> int:
    try:
        st = path.lstat()
    except FileNotFoundError:  # a process removed it meanwhile
        return 0
    if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == mode:
        return 0
    os.chmod(path, mode)
    return 1


def remove_sockets(paths: list[Path]) -> list[Path]:
    """Remove the unix sockets among ``paths`` that this user owns; returns the removed ones."""
    removed = []
    for path in paths:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.getuid():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
