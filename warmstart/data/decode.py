"""Image decoding for ImageFolder sources: full decode (truncation raises), mode conversion,
crop and resize, a per-image pixel limit read from the header, and a pool of worker processes
only where the input is large enough for it to pay off."""

from __future__ import annotations

import io
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from warmstart.data.shards import env_int
from warmstart.data.transforms import apply_crop, resize_image
from warmstart.errors import DataError

GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
# From this many images a pool of worker processes (fork) beats decoding in-process, pool start
# included: measured 1.29x (64×64 RGB PNG) and 1.01x (8×8 gray) at 1,024 images, slower below
# (0.87x and 0.45x at 256). BENCHMARKS.md §9, benchmarks/decode_pool.py.
PARALLEL_MIN = 1024
MAX_PIXELS_ENV = "WARMSTART_MAX_IMAGE_PIXELS"
MAX_PIXELS = 40_000_000  # one image above this (e.g. an 8000×6000 photo) is refused
TOO_LARGE = "too large: "  # decode_chunk's marker for an image over the pixel limit


class ImageTooLarge(ValueError):
    """An image whose header says it has more pixels than the configured limit."""


def max_pixels() -> int:
    """The per-image pixel limit (``WARMSTART_MAX_IMAGE_PIXELS``, default 40 million)."""
    return env_int(MAX_PIXELS_ENV, MAX_PIXELS, "40e6")


def _open_checked(fp: object, limit: int):
    """PIL image from the header only; over ``limit`` pixels raises ImageTooLarge."""
    from PIL import Image

    try:
        img = Image.open(fp)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageTooLarge(str(exc)) from None
    if img.width * img.height > limit:
        img.close()
        raise ImageTooLarge(f"{img.width}x{img.height} px, over the {limit:,}-pixel limit")
    return img


def _decode_one(
    source: str | bytes,
    channels: int | None,
    size: tuple[int, int] | None,
    crop: str | None,
    limit: int = MAX_PIXELS,
) -> tuple[np.ndarray, str]:
    """Decode fully (truncation raises here), convert mode, crop, resize → (C×H×W, source mode)."""
    from PIL import Image

    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with _open_checked(fp, limit) as img:
            img.load()
            mode = img.mode
            if channels == 1:
                img = img.convert("L") if mode in GRAY_MODES else img.convert("RGB").convert("L")
            else:
                img = img.convert("RGB")
            arr = np.asarray(img)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if crop is not None:
        size = size or (img.height, img.width)
        arr = apply_crop(arr, crop, size)
    if size is not None:
        arr = resize_image(arr, size)
    return np.ascontiguousarray(arr), mode


def decode_chunk(
    sources: list[str | bytes],
    channels: int | None,
    size: tuple[int, int] | None,
    crop: str | None,
    limit: int = MAX_PIXELS,
) -> list[tuple[np.ndarray | None, str]]:
    """Worker entry point: (array, mode) per source, or (None, error text) when undecodable
    (``TOO_LARGE`` + detail for an image over the pixel limit)."""
    out: list[tuple[np.ndarray | None, str]] = []
    for source in sources:
        try:
            out.append(_decode_one(source, channels, size, crop, limit))
        except ImageTooLarge as exc:
            out.append((None, TOO_LARGE + str(exc)))
        except Exception as exc:  # any decoder failure is a corrupt file for the caller
            out.append((None, f"{type(exc).__name__}: {exc}"))
    return out


def _mp_context():
    """fork where there is one: workers start at once and never re-import the caller's
    ``__main__`` (a script importing torch, or a script read from standard input)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


class Decoder:
    """Decodes lists of sources with fixed options: in-process for fewer than ``PARALLEL_MIN``
    images in all (or one worker), else in one pool of worker processes kept until closed."""

    def __init__(self, total: int, workers: int | None = None, **options: object) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.options = (options["channels"], options["size"], options["crop"], max_pixels())
        parallel = self.workers > 1 and total >= PARALLEL_MIN
        self.pool = (
            ProcessPoolExecutor(max_workers=self.workers, mp_context=_mp_context())
            if parallel
            else None
        )

    def __call__(self, sources: list[str | bytes]) -> list[tuple[np.ndarray | None, str]]:
        if self.pool is None:
            return decode_chunk(sources, *self.options)
        step = max(32, -(-len(sources) // (self.workers * 4)))
        chunks = [sources[i : i + step] for i in range(0, len(sources), step)]
        rest = zip(*[self.options] * len(chunks), strict=True)
        try:
            return [r for part in self.pool.map(decode_chunk, chunks, *rest) for r in part]
        except BrokenProcessPool as exc:
            raise DataError(
                f"image decoding worker processes died ({exc}); retry with workers=1"
            ) from None

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def decode_all(
    sources: list[str | bytes],
    *,
    channels: int | None,
    size: tuple[int, int] | None,
    crop: str | None,
    workers: int | None = None,
) -> list[tuple[np.ndarray | None, str]]:
    """Decode in ``workers`` processes (default: CPU count); small inputs decode in-process."""
    with Decoder(len(sources), workers, channels=channels, size=size, crop=crop) as decode:
        return decode(sources)
