"""The leakage guard on tiny in-memory images (no services): identical datasets are refused, a
5% overlap is counted, resized and re-encoded copies are found, distinct images are not."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from warmstart.params import PipelineParams
from warmstart.stages import leakage, make_plan
from warmstart.stages.leakage import LeakageError, check, enforce, refuse_same_dataset


def _images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Smooth random grey images (6×6 noise upsampled): distinct, but resizable like photos."""
    rng = np.random.default_rng(seed)
    coarse = (rng.random((n, 6, 6)) * 255).astype(np.uint8)
    big = [np.asarray(Image.fromarray(c).resize((size, size), Image.BILINEAR)) for c in coarse]
    return np.stack(big)[:, None]


def _resized(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[1:]
    up = Image.fromarray(img[0]).resize((2 * w, 2 * h), Image.BICUBIC)
    return np.asarray(up.resize((w, h), Image.BILINEAR))[None]


def _jpeg(img: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img[0]).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("L"))[None]


def test_same_source_and_target_is_refused_with_the_counts():
    target = _images(100)
    splits = {"test": target[:40], "validation": target[40:70]}
    report = check(splits, source=target)
    assert report.leaky
    source = [o for o in report.overlaps if o.what == "source"]
    assert [(o.split, o.exact, o.near, o.total) for o in source] == [
        ("test", 40, 0, 40),
        ("validation", 30, 0, 30),
    ]
    line = report.message()
    assert "\n" not in line
    assert line.startswith(
        "source shares 40 of 40 test images and 30 of 30 validation images with the target"
    )
    with pytest.raises(LeakageError, match="40 of 40 test images") as info:
        enforce(report, allow=False)
    assert "--allow-leakage" in str(info.value)
    blocked = enforce(report, allow=True)
    assert blocked is not None and blocked.startswith("leakage: source shares 40 of 40")


def test_five_percent_overlap_is_detected_and_counted():
    target = _images(400, seed=1)
    test, val = target[:200], target[200:400]
    source = np.concatenate([_images(1000, seed=2), test[:10]])  # 10 of 200 = 5%
    report = check({"test": test, "validation": val}, source=source)
    by_split = {o.split: o for o in report.overlaps}
    assert (by_split["test"].exact, by_split["test"].near) == (10, 0)
    assert by_split["validation"].found == 0
    assert report.leaky and by_split["test"].leaky and not by_split["validation"].leaky
    assert report.metrics() == {
        "leakage.source.test.exact": 10.0,
        "leakage.source.test.near": 0.0,
        "leakage.source.validation.exact": 0.0,
        "leakage.source.validation.near": 0.0,
    }
    assert report.message().startswith("source shares 10 of 200 test images and 0 of 200 ")


def test_one_chance_match_is_below_the_tolerance():
    target = _images(200, seed=3)
    report = check({"test": target}, source=np.concatenate([_images(300, seed=4), target[:2]]))
    assert report.overlaps[0].exact == 2 and not report.leaky  # 1% of 200 is tolerated
    assert enforce(report, allow=False) is None


def _digits(n: int) -> np.ndarray:
    """The first ``n`` UCI optical digits (8×8, scikit-learn's copy) as uint8."""
    from sklearn.datasets import load_digits

    return np.clip(load_digits().images[:n] * 16, 0, 255).astype(np.uint8)[:, None]


@pytest.mark.parametrize(("copy", "least"), [(_resized, 16), (_jpeg, 12)], ids=["resized", "jpeg"])
def test_near_duplicate_copies_are_detected(copy, least):
    """Real 8×8 digits: resized (8→16→8 px) and JPEG q75 copies are found as near-duplicates
    (on 500 digits: 90% and 74%, see ``warmstart.stages.leakage``)."""
    test = _digits(50)
    copies = np.stack([copy(img) for img in test[:20]])
    assert not any((c == t).all() for c, t in zip(copies, test[:20], strict=True))
    report = check({"test": test}, source=np.concatenate([_images(500, 8, seed=6), copies]))
    (o,) = report.overlaps
    assert o.exact == 0 and o.near >= least, o
    assert report.leaky


def test_distinct_images_are_not_flagged():
    report = check(
        {"test": _images(300, seed=7), "validation": _images(200, seed=8)},
        source=_images(2000, seed=9),
    )
    assert sum(o.found for o in report.overlaps) == 0 and not report.leaky
    assert report.message().startswith("no leakage: source 0/300 test")


def test_the_source_is_compared_at_the_targets_geometry():
    target = _images(60, size=8, seed=10)
    rgb_big = np.repeat(
        np.stack([np.asarray(Image.fromarray(t[0]).resize((16, 16))) for t in target])[:, None],
        3,
        axis=1,
    )
    report = check({"test": target}, source=rgb_big)
    assert report.overlaps[0].found >= 55 and report.leaky


def test_the_target_pool_is_checked_for_exact_copies_only():
    target = _images(100, seed=11)
    pool = np.concatenate([target[50:], target[:3], _jpeg(target[3])[None]])
    report = check({"test": target[:50]}, pool=pool)
    (o,) = report.overlaps
    assert (o.what, o.exact, o.near) == ("target pool", 3, 0)
    assert report.message().startswith("target pool shares 3 of 50 test images")
    assert report.metrics()["leakage.pool.test.exact"] == 3.0


def test_near_mask_counts_bits(monkeypatch):
    ref = np.array([0b1111, 1 << 63], dtype=np.uint64)
    query = np.array([0b0000, 0b0111, (1 << 63) | (0b11111 << 8), 0xFFFF_0000], dtype=np.uint64)
    assert leakage.near_mask(query, ref, bits=4).tolist() == [True, True, False, False]
    assert leakage.near_mask(query, ref, bits=5).tolist() == [True, True, True, False]
    assert leakage.near_mask(query, ref[:0]).tolist() == [False] * 4
    monkeypatch.setattr(leakage, "_BLOCK", 3)  # one query row per block: the same answer
    assert leakage.near_mask(query, ref, bits=5).tolist() == [True, True, True, False]


def test_the_same_spec_as_source_and_target_is_refused_before_any_service():
    def refuse(**params) -> None:
        refuse_same_dataset(make_plan(PipelineParams(**params, k_shot=5)))

    same = dict(source="builtin:uci-digits", target="builtin:uci-digits")
    with pytest.raises(LeakageError, match=r"^--source and --target are the same dataset"):
        refuse(**same)
    # the source inherits the target's geometry, so these are the same images too
    implied = dict(source="builtin:mnist-5k", target="builtin:mnist-5k?size=8x8")
    with pytest.raises(LeakageError, match=r"\(builtin:mnist-5k\?size=8x8\)"):
        refuse(**implied)
    refuse(**same, allow_leakage=True)
    refuse(source="builtin:uci-digits?classes=0-4", target="builtin:uci-digits?classes=5-9")
    # disjoint classes: the images are checked after ingestion


def test_pixel_correlation_is_one_for_copies_and_zero_for_flat_images():
    img = _images(3, seed=12)
    brighter = np.clip(img.astype(int) + 10, 0, 255).astype(np.uint8)
    flat = np.full_like(img, 7)
    r = leakage.pixel_correlation(
        np.concatenate([img, img, img]), np.concatenate([brighter, 255 - img, flat])
    )
    assert np.allclose(r[:3], 1, atol=0.02) and np.allclose(r[3:6], -1, atol=1e-5)
    assert r[6:].tolist() == [0.0, 0.0, 0.0]


def test_distinct_digits_the_hash_confuses_are_not_near_duplicates():
    """Split-class MNIST at 16×16 (BENCHMARKS §2): digits 5-9 whose perceptual hash is within 4
    bits of a 0-4 digit (19 of 2,500) are different digits; the pixel check keeps 3 (0.12%), so
    the run is no longer refused, and resized copies of the same images are all still found."""
    from warmstart.data import load_source, parse_spec

    load = lambda spec: load_source(parse_spec(spec)).images  # noqa: E731
    source = load("builtin:mnist-5k?classes=0-4&size=16x16")
    target = load("builtin:mnist-5k?classes=5-9&size=16x16")
    hashes = leakage.perceptual_hashes(target), leakage.perceptual_hashes(source)
    assert leakage.near_mask(*hashes).sum() >= 15  # the hash alone: 0.76%, the old refusal
    report = check({"test": target}, source=source)
    assert report.overlaps[0].exact == 0 and report.overlaps[0].near <= 5 and not report.leaky
    copies = np.stack([_resized(t) for t in target[:100]])
    found = check({"test": target[:100]}, source=np.concatenate([source, copies]))
    assert found.overlaps[0].near == 100 and found.leaky
