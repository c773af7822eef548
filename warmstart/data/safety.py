"""Untrusted-input readers: a restricted unpickler for CIFAR's python batches and a tar reader
that refuses links, absolute paths and ``..`` members, caps sizes, and treats a damaged header
or a failed compression checksum as a corrupt archive instead of a shorter one."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from warmstart.errors import DataError

MAX_MEMBER_BYTES = 512 * 2**20  # one CIFAR batch is ~31 MB; the whole archive ~178 MB
MAX_TOTAL_BYTES = 2 * 2**30


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it, limited to latin-1."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _allowed() -> dict[tuple[str, str], object]:
    import numpy as np

    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    return {
        # what the official python2 batches contain
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # the same array pickled by numpy 2 / protocol 5, and bytes pickled with protocol 2
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("_codecs", "encode"): _latin1_encode,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """Admits only numpy array reconstruction and plain containers; anything else is refused."""

    def find_class(self, module: str, name: str) -> object:
        allowed = _allowed()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def restricted_loads(data: bytes, *, where: str) -> object:
    """Unpickle untrusted bytes (latin-1 for python2 strings); refusals become DataError."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"{where} was refused by the restricted unpickler ({exc}); "
            "use the official CIFAR-10 python batches"
        ) from None
    except Exception as exc:  # truncated or garbage bytes
        raise DataError(
            f"{where} is not a readable CIFAR pickle ({type(exc).__name__}: {exc}); "
            "re-download or re-extract cifar-10-python.tar.gz"
        ) from None


def check_member(member: tarfile.TarInfo, *, archive: str) -> str | None:
    """The member's safe relative path, None for directories; raises DataError for anything
    that could escape the target (links, devices, absolute paths, ``..``)."""
    name = member.name
    path = PurePosixPath(name)
    if member.issym() or member.islnk():
        raise DataError(
            f"archive {archive} member {name!r} is a link; refusing it: use a plain archive"
        )
    if name.startswith(("/", "\\")) or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"archive {archive} member {name!r} has an absolute path; refusing it")
    if ".." in path.parts or ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise DataError(
            f"archive {archive} member {name!r} points outside the archive ('..'); refusing it"
        )
    if member.isdir():
        return None
    if not member.isfile():
        raise DataError(f"archive {archive} member {name!r} is not a regular file; refusing it")
    return str(path)


_COMPRESSED = (
    (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"BZh", bz2.BZ2File),
    (b"\xfd7zXZ\x00", lzma.LZMAFile),
)
# what a damaged archive raises while being read (BadGzipFile and bz2 errors are OSErrors)
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)


def _decompressor(raw: BinaryIO) -> BinaryIO | None:
    """A decompressing reader when the file starts with a gzip, bzip2 or xz signature."""
    magic = raw.read(6)
    raw.seek(0)
    for signature, opener in _COMPRESSED:
        if magic.startswith(signature):
            return opener(raw)
    return None


def _corrupt(archive: str, detail: str) -> DataError:
    return DataError(f"archive {archive} is corrupt ({detail}); re-download it")


def _choose(
    members: list[tarfile.TarInfo], archive: str, wanted: set[str] | None, caps: tuple[int, int]
) -> list[tuple[str, tarfile.TarInfo]]:
    """Check every member, then pick the wanted regular files within the size caps."""
    max_member, max_total = caps
    total, chosen = 0, []
    for member in members:
        name = check_member(member, archive=archive)
        if name is None or (wanted is not None and PurePosixPath(name).name not in wanted):
            continue
        if member.size > max_member:
            raise DataError(
                f"archive {archive} member {name!r} is {member.size} bytes, over the "
                f"{max_member}-byte cap; this is not a CIFAR-10 archive"
            )
        total += member.size
        if total > max_total:
            raise DataError(f"archive {archive} holds over {max_total} bytes; refusing to read it")
        chosen.append((name, member))
    return chosen


def _read_members(
    tar: tarfile.TarFile, chosen: list[tuple[str, tarfile.TarInfo]], archive: str
) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, member in chosen:
        try:
            fh = tar.extractfile(member)
            if fh is not None:
                out[name] = fh.read()
        except _READ_ERRORS as exc:
            raise _corrupt(archive, f"member {name!r}: {exc}") from None
    return out


def _check_end(tar: tarfile.TarFile, stream: BinaryIO, archive: str) -> None:
    """tarfile takes a damaged header after the first for the end of the archive; the block
    where the listing stopped must be the zero end marker (or the end of the file)."""
    try:
        stream.seek(tar.offset)
        block = stream.read(tarfile.BLOCKSIZE)
    except _READ_ERRORS as exc:
        raise _corrupt(archive, str(exc)) from None
    if block.strip(b"\0"):
        raise _corrupt(
            archive, f"damaged tar header at byte {tar.offset}; the members after it are lost"
        )


def _drain(packed: BinaryIO, archive: str) -> None:
    """Decompress to the end of the stream so its checksum (gzip CRC-32 and length, bzip2 and
    xz checks) is verified; tarfile stops at the end-of-archive marker and never gets there."""
    try:
        while packed.read(1 << 20):
            pass
    except _READ_ERRORS as exc:
        raise _corrupt(archive, str(exc)) from None


def read_tar(
    path: str | os.PathLike,
    *,
    wanted: set[str] | None = None,
    max_member: int = MAX_MEMBER_BYTES,
    max_total: int = MAX_TOTAL_BYTES,
    name: str | None = None,
) -> dict[str, bytes]:
    """Read regular files from a tar archive (plain, gzip, bzip2 or xz) into memory (no
    extraction), keyed by their path. ``name`` is what messages call the archive (e.g. the
    s3:// address a temporary copy came from).

    Every member is checked before anything is read; ``wanted`` (basenames) limits what is
    read. A damaged header or a failed compression checksum raises DataError: nothing is
    returned from a corrupt archive.
    """
    archive = name or str(path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below, after the decompressor
    except OSError as exc:
        raise DataError(f"archive {archive} cannot be opened ({exc}); check the path") from None
    with raw:
        packed = _decompressor(raw)
        stream = packed or raw
        try:
            tar = tarfile.open(fileobj=stream, mode="r:")
        except _READ_ERRORS as exc:
            raise DataError(
                f"archive {archive} cannot be opened ({exc}); check it is a .tar or .tar.gz, "
                "or re-download it"
            ) from None
        with tar:
            try:
                members = tar.getmembers()
            except _READ_ERRORS as exc:
                raise _corrupt(archive, str(exc)) from None
            chosen = _choose(members, archive, wanted, (max_member, max_total))
            out = _read_members(tar, chosen, archive)
            _check_end(tar, stream, archive)
        if packed is not None:
            _drain(packed, archive)
            packed.close()
    return out


def safe_extract(
    path: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    max_member: int = MAX_MEMBER_BYTES,
    max_total: int = MAX_TOTAL_BYTES,
) -> list[Path]:
    """Extract a tar archive's regular files under ``dest`` after checking every member."""
    dest = Path(dest).resolve()
    files = read_tar(path, max_member=max_member, max_total=max_total)
    written = []
    for name, data in files.items():
        target = (dest / name).resolve()
        if dest not in target.parents:
            raise DataError(
                f"archive {path} member {name!r} would land outside {dest}; refusing it"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(target)
    return written
