"""Corrupt archives are reported as corrupt, never read as a shorter or different dataset:
gzip's CRC is checked at the end of the stream, and a damaged tar header after the first is not
taken for the end of the archive."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile

import pytest

from tests.data.helpers import gzip_with_flipped_pixel, write_cifar
from warmstart.data import load_source
from warmstart.data.safety import read_tar
from warmstart.errors import DataError


@pytest.fixture
def cifar_tar(tmp_path) -> bytes:
    """An uncompressed tar of a tiny CIFAR-10 folder (members in batch order)."""
    folder = write_cifar(tmp_path / "src", per_batch=6, seed=4)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder, arcname=folder.name)
    return buf.getvalue()


def _member_offset(tar_bytes: bytes, basename: str) -> int:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return next(m.offset for m in tar.getmembers() if m.name.endswith("/" + basename))


def test_intact_archives_read_in_every_compression(tmp_path, cifar_tar):
    reference = load_source(f"cifar10:{tmp_path / 'src'}").content_hash()
    for suffix, packed in (
        ("tar", cifar_tar),
        ("tar.gz", gzip.compress(cifar_tar)),
        ("tar.bz2", bz2.compress(cifar_tar)),
        ("tar.xz", lzma.compress(cifar_tar)),
    ):
        path = tmp_path / f"cifar.{suffix}"
        path.write_bytes(packed)
        assert load_source(f"cifar10:{path}").content_hash() == reference, suffix


def test_flipped_pixel_in_a_gzip_archive_fails_its_crc(tmp_path, cifar_tar):
    # Stored (level 0) deflate blocks carry bytes verbatim: a flipped byte decompresses fine
    # and only the CRC-32 at the end of the file can tell.
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(gzip_with_flipped_pixel(cifar_tar))
    with pytest.raises(DataError) as err:
        load_source(f"cifar10:{path}")
    message = str(err.value)
    assert str(path) in message and "corrupt" in message and "CRC" in message
    assert "\n" not in message


@pytest.mark.parametrize("damage", ["crc", "length", "truncated"])
def test_damaged_gzip_trailer_is_corrupt(tmp_path, cifar_tar, damage):
    packed = bytearray(gzip.compress(cifar_tar))
    if damage == "crc":
        packed[-8] ^= 0x01
    elif damage == "length":
        packed[-1] ^= 0x01
    else:
        del packed[-6:]
    path = tmp_path / "cifar.tar.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(DataError, match="is corrupt") as err:
        read_tar(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("compress", [False, True])
def test_damaged_member_header_is_corrupt_not_missing_batches(tmp_path, cifar_tar, compress):
    data = bytearray(cifar_tar)
    offset = _member_offset(cifar_tar, "data_batch_4")
    data[offset : offset + 20] = b"garbage-header-bytes"  # name field and checksum now disagree
    path = tmp_path / ("cifar.tar.gz" if compress else "cifar.tar")
    path.write_bytes(gzip.compress(bytes(data)) if compress else bytes(data))
    with pytest.raises(DataError) as err:
        load_source(f"cifar10:{path}")
    message = str(err.value)
    assert "corrupt" in message and f"byte {offset}" in message and str(path) in message
    assert "lacks" not in message


def test_archive_read_from_a_folder_checks_its_crc_too(tmp_path, cifar_tar):
    packed = bytearray(gzip.compress(cifar_tar))
    packed[-8] ^= 0x01
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "cifar-10-python.tar.gz").write_bytes(bytes(packed))
    with pytest.raises(DataError, match="cifar-10-python.tar.gz is corrupt"):
        load_source(f"cifar10:{folder}")


def test_corrupt_archive_is_not_half_read(tmp_path, cifar_tar):
    """Corruption past the end-of-archive marker still fails the whole read."""
    padded = cifar_tar + bytes(10240)
    packed = bytearray(gzip.compress(padded, compresslevel=0))
    packed[-20] ^= 0xFF  # inside the zero padding, after the end marker
    path = tmp_path / "cifar.tar.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(DataError, match="corrupt"):
        read_tar(path)
