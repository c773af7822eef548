"""Sharded dataset storage: fixed-size uint8 ``.npy`` shards under ``datasets/<hash>/shards/``.

Shard ``i`` holds rows ``i*rows .. (i+1)*rows - 1`` of the N×C×H×W image array, so any index
maps to its shard by division: a split or a k-shot subset reads only the shards it touches.
Every shard's sha256 is in the manifest (written last) and is checked each time the shard is
read, from the store or from the local cache. The local cache is content-addressed by that
sha256 and bounded in bytes (least recently used shards are evicted).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from warmstart import safepath, storage
from warmstart.errors import DataError, StorageError
from warmstart.settings import state_dir

log = logging.getLogger(__name__)

SHARD_BYTES = 16 * 2**20  # target shard size: ~1.3k 64×64 RGB images, one GET each
CACHE_DIR_ENV = "WARMSTART_CACHE_DIR"
CACHE_BYTES_ENV = "WARMSTART_SHARD_CACHE_BYTES"
CACHE_BYTES = 4 * 2**30  # default local shard cache budget
SHARD_DIR = "shards"
FETCH_THREADS = 4  # shards a k-shot read fetches at once (each ≤ SHARD_BYTES in memory)


def rows_per_shard(image_bytes: int, shard_bytes: int | None = None) -> int:
    """Images per shard for images of ``image_bytes`` each (at least one)."""
    return max(1, (shard_bytes or SHARD_BYTES) // max(1, image_bytes))


def sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def parse_npy(data: bytes, where: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise DataError(
            f"{where} is not a plain .npy array ({exc}); re-ingest the source"
        ) from None


# ---------------------------------------------------------------- local cache


def cache_dir() -> Path:
    """``WARMSTART_CACHE_DIR``, else ``cache/shards`` in the stack's state folder."""
    explicit = os.environ.get(CACHE_DIR_ENV, "").strip()
    return Path(explicit).expanduser() if explicit else state_dir() / "cache" / "shards"


def env_int(var: str, default: int, example: str) -> int:
    """An integer setting from the environment (``4e9`` allowed); a bad value names the fix."""
    raw = os.environ.get(var, "").strip()
    try:
        return int(float(raw)) if raw else default
    except ValueError:
        raise DataError(f"{var}={raw!r} is not a number: set it to e.g. {example}") from None


def cache_budget() -> int:
    return env_int(CACHE_BYTES_ENV, CACHE_BYTES, "4e9")


class ShardCache:
    """Verified shards on local disk, named by their sha256, at most ``budget`` bytes."""

    def __init__(self, root: Path | None = None, budget: int | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()
        self.budget = cache_budget() if budget is None else budget

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.npy"

    def get(self, digest: str) -> bytes | None:
        """The cached bytes when present and still matching ``digest`` (a damaged copy is
        dropped, so the caller fetches it again)."""
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if sha256(data) != digest:
            log.warning("local shard cache: %s is damaged; fetching it again", path)
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # least recently used eviction reads mtime
        return data

    def put(self, digest: str, data: bytes) -> None:
        """Store verified bytes atomically (write, then rename); evict to stay in budget."""
        if self.budget <= 0 or len(data) > self.budget:
            return
        path = self.path(digest)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("local shard cache %s not writable (%s); reading from S3", self.root, exc)
            return
        self.evict()

    def adopt(self, digest: str, file: Path) -> None:
        """Move a verified local shard file into the cache (ingestion warms it for training)."""
        if self.budget <= 0 or file.stat().st_size > self.budget:
            return
        path = self.path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(file, path)
        self.evict()

    def evict(self) -> None:
        files = []
        for p in self.root.glob("*/*.npy"):
            try:
                st = p.stat()
            except FileNotFoundError:  # evicted meanwhile by another reader thread
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.budget:
                break
            path.unlink(missing_ok=True)
            total -= size


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class ShardIndex:
    """Where a stored dataset's shards are and what each must hash to (picklable for workers)."""

    root: str  # s3://bucket/datasets/<hash>
    shape: tuple[int, int, int, int]  # N, C, H, W
    rows: int  # images per shard (the last may hold fewer)
    keys: tuple[str, ...]  # shard names relative to root
    digests: tuple[str, ...]

    @classmethod
    def from_manifest(cls, root: str, manifest: dict) -> ShardIndex:
        info, where = manifest["shards"], f"{root.rstrip('/')}/manifest.json"
        return cls(
            root=root.rstrip("/"),
            shape=tuple(int(v) for v in manifest["shape"]),  # type: ignore[arg-type]
            rows=int(info["rows"]),
            # the digests name files of the local cache, the keys objects: checked before use
            keys=tuple(safepath.relative_key(s["key"], "shard key", where) for s in info["items"]),
            digests=tuple(
                safepath.hex_digest(s["sha256"], "shard sha256", where) for s in info["items"]
            ),
        )

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def span(self, i: int) -> tuple[int, int]:
        """Rows [start, stop) of shard ``i``."""
        return i * self.rows, min((i + 1) * self.rows, self.shape[0])

    def uri(self, i: int) -> storage.S3Uri:
        return storage.parse_s3_uri(self.root).child(self.keys[i])


def fetch_shard(index: ShardIndex, i: int, cache: ShardCache | None = None) -> np.ndarray:
    """Shard ``i`` as an array, from the cache or the store, its sha256 checked either way."""
    digest = index.digests[i]
    data = cache.get(digest) if cache is not None else None
    if data is None:
        obj = index.uri(i)
        try:
            data = storage.get_bytes(obj)
        except StorageError as err:
            if storage.head(obj) is None:
                raise DataError(
                    f"{obj} is missing from the store (shard {i} of dataset {index.root}/): the "
                    f"dataset was partly deleted; delete {index.root}/ and re-ingest the source"
                ) from None
            raise err
        if sha256(data) != digest:
            raise DataError(
                f"{obj} does not match its sha256 in the manifest: the stored dataset was "
                f"altered; delete {index.root}/ and re-ingest the source"
            )
        if cache is not None:
            cache.put(digest, data)
    array = parse_npy(data, str(index.uri(i)))
    start, stop = index.span(i)
    if array.dtype != np.uint8 or array.shape != (stop - start, *index.shape[1:]):
        raise DataError(
            f"{index.uri(i)} holds {array.dtype} {array.shape}, not the manifest's rows "
            f"{start}..{stop - 1}: re-ingest the source"
        )
    return array


class ShardedImages:
    """A read-only N×C×H×W uint8 array-like over stored shards: ``images[idx]`` (an int, a
    slice or an index array) reads only the shards holding ``idx``, in ``idx`` order."""

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, index: ShardIndex, cache: ShardCache | None = None, keep: int = 2):
        self.index, self.cache, self.keep = index, cache, keep
        self.shape = index.shape
        self._recent: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self.index.nbytes

    def shard(self, i: int) -> np.ndarray:
        """Shard ``i``, keeping the last ``keep`` in memory (sequential reads hit them)."""
        if i in self._recent:
            self._recent.move_to_end(i)
            return self._recent[i]
        array = fetch_shard(self.index, i, self.cache)
        self._recent[i] = array
        while len(self._recent) > self.keep:
            self._recent.popitem(last=False)
        return array

    def take(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        idx = np.where(idx < 0, idx + len(self), idx)
        out = np.empty((len(idx), *self.shape[1:]), dtype=np.uint8)
        which = idx // self.index.rows
        for i, shard in self._shards([int(i) for i in np.unique(which)]):
            at = np.nonzero(which == i)[0]
            out[at] = shard[idx[at] - i * self.index.rows]
        return out

    def _shards(self, needed: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """The ``needed`` shards: those held in memory, then the rest fetched ``FETCH_THREADS``
        at a time (a k-shot subset touches many shards; one by one, their round trips add up).
        At most ``FETCH_THREADS`` fetched shards are alive at once."""
        missing = [i for i in needed if i not in self._recent]
        for i in needed:
            if i in self._recent:
                yield i, self.shard(i)
        if len(missing) <= 1:
            yield from ((i, self.shard(i)) for i in missing)
            return
        with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
            for start in range(0, len(missing), FETCH_THREADS):
                batch = missing[start : start + FETCH_THREADS]
                fetched = pool.map(lambda i: fetch_shard(self.index, i, self.cache), batch)
                yield from zip(batch, fetched, strict=True)

    def __getitem__(self, key: object) -> np.ndarray:
        if isinstance(key, int | np.integer):
            return self.take(np.array([key]))[0]
        if isinstance(key, slice):
            return self.take(np.arange(len(self))[key])
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.nonzero(key)[0]
        return self.take(key)

    def chunks(self) -> Iterator[np.ndarray]:
        """Every shard in order (for streaming hashes and full reads)."""
        for i in range(len(self.index.keys)):
            yield fetch_shard(self.index, i, self.cache)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        log.warning(
            "materialising %d stored images (%d MB) in memory", len(self), self.nbytes >> 20
        )
        whole = np.concatenate(list(self.chunks())) if len(self) else np.empty(self.shape, np.uint8)
        return whole if dtype is None else whole.astype(dtype)
