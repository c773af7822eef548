import numpy as np
import pytest
import torchvision
from PIL import Image, features

from tests.data.helpers import write_image, write_tree
from warmstart.data import decode, load_source
from warmstart.errors import DataError


def _torchvision_arrays(root):
    tv = torchvision.datasets.ImageFolder(str(root))
    images = np.stack([np.asarray(img).transpose(2, 0, 1) for img, _ in tv])
    return tv, images, np.array(tv.targets)


@pytest.fixture
def mixed_tree(tmp_path):
    """Every supported format and mode, any letter case, nested folders and litter."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    write_image(root / "cat" / "a.png", rng)
    write_image(root / "cat" / "b.PNG", rng, mode="RGBA")
    write_image(root / "cat" / "c.png", rng, mode="P")
    write_image(root / "cat" / "sub" / "d.png", rng, mode="L")
    write_image(root / "Dog" / "e.JPG", rng, fmt="JPEG")
    write_image(root / "Dog" / "f.jpeg", rng, mode="CMYK", fmt="JPEG")
    write_image(root / "Dog" / "g.bmp", rng, fmt="BMP")
    write_image(root / "Dog" / "h.Bmp", rng, mode="L", fmt="BMP")
    if features.check("webp"):
        write_image(root / "emu" / "i.webp", rng, fmt="WEBP")
        write_image(root / "emu" / "j.WebP", rng, mode="RGBA", fmt="WEBP")
    write_image(root / "emu" / "k.png", rng)
    (root / "cat" / ".DS_Store").write_bytes(b"\0\1junk")
    (root / "Dog" / "Thumbs.db").write_bytes(b"junk")
    (root / "README.txt").write_text("files beside the class folders are ignored")
    return root


def test_same_images_labels_classes_as_torchvision(mixed_tree):
    ds = load_source(f"imagefolder:{mixed_tree}")
    tv, images, targets = _torchvision_arrays(mixed_tree)
    assert ds.classes == tv.classes == ["Dog", "cat", "emu"]
    np.testing.assert_array_equal(ds.labels, targets)
    np.testing.assert_array_equal(ds.images, images)
    assert ds.name == "pets" and ds.channels == 3 and ds.size == (12, 10)
    assert ds.provenance["modes"]["CMYK"] == 1
    assert ds.provenance["conversions"][0]["op"] == "decode"


def test_train_test_layout_is_honoured(tmp_path):
    write_tree(tmp_path / "ds" / "train", per_class=4, seed=1)
    write_tree(tmp_path / "ds" / "test", per_class=2, seed=2)
    ds = load_source(f"imagefolder:{tmp_path / 'ds'}")
    tv_train, train_images, train_targets = _torchvision_arrays(tmp_path / "ds" / "train")
    _, test_images, test_targets = _torchvision_arrays(tmp_path / "ds" / "test")
    assert ds.classes == tv_train.classes
    np.testing.assert_array_equal(ds.predefined_test, [False] * 12 + [True] * 6)
    np.testing.assert_array_equal(ds.images, np.concatenate([train_images, test_images]))
    np.testing.assert_array_equal(ds.labels, np.concatenate([train_targets, test_targets]))


def test_gray_tree_is_one_channel_unless_asked(tmp_path):
    write_tree(tmp_path / "g", mode="L")
    gray = load_source(f"imagefolder:{tmp_path / 'g'}")
    rgb = load_source(f"imagefolder:{tmp_path / 'g'}?channels=3")
    assert gray.channels == 1 and rgb.channels == 3
    np.testing.assert_array_equal(rgb.images[:, 1], gray.images[:, 0])
    color = load_source(f"imagefolder:{tmp_path / 'g'}?channels=1&size=6x5&classes=emu,cat")
    assert color.images.shape == (6, 1, 6, 5) and color.classes == ["emu", "cat"]


def test_hidden_files_and_folders_are_skipped(tmp_path):
    root = write_tree(tmp_path / "h")
    rng = np.random.default_rng(9)
    write_image(root / "cat" / "._resource.png", rng)
    write_image(root / ".cache" / "x.png", rng)
    write_image(root / "dog" / ".thumbs" / "y.png", rng)
    ds = load_source(f"imagefolder:{root}")
    assert ds.classes == ["cat", "dog", "emu"] and len(ds) == 9


def test_links_out_of_the_tree_are_refused_unless_asked(tmp_path):
    """Issue 22: a linked file or class folder that leads outside the tree is refused in one line
    naming it; ``follow_symlinks=true`` reads it; links that stay inside are fine."""
    rng = np.random.default_rng(3)
    outside = write_tree(tmp_path / "elsewhere", classes=("secret",))
    root = write_tree(tmp_path / "t", classes=("cat", "dog"))
    (root / "cat" / "in.png").symlink_to(root / "dog" / "00.png")  # inside: fine
    (root / "emu").symlink_to(root / "dog")  # a class folder linked inside: fine
    ds = load_source(f"imagefolder:{root}")
    assert ds.classes == ["cat", "dog", "emu"] and len(ds) == 10
    write_image(tmp_path / "stray.png", rng)
    (root / "cat" / "out.png").symlink_to(tmp_path / "stray.png")
    with pytest.raises(DataError, match=r"cat/out.png is a symbolic link to .*stray.png, outside"):
        load_source(f"imagefolder:{root}")
    ds = load_source(f"imagefolder:{root}?follow_symlinks=true")
    assert len(ds) == 11
    (root / "cat" / "out.png").unlink()
    (root / "secret").symlink_to(outside / "secret")
    with pytest.raises(DataError, match=r"t/secret is a symbolic link to .*elsewhere/secret, out"):
        load_source(f"imagefolder:{root}")
    ds = load_source(f"imagefolder:{root}?follow_symlinks=yes")
    assert ds.classes == ["cat", "dog", "emu", "secret"] and len(ds) == 13
    with pytest.raises(DataError, match="write follow_symlinks=true or false"):
        load_source(f"imagefolder:{root}?follow_symlinks=maybe")


def test_sizes_must_agree_or_be_given(tmp_path):
    root = write_tree(tmp_path / "s")
    write_image(root / "dog" / "big.png", np.random.default_rng(1), size=(20, 20))
    with pytest.raises(DataError) as err:
        load_source(f"imagefolder:{root}")
    assert "big.png" in str(err.value) and "size=HxW" in str(err.value)
    ds = load_source(f"imagefolder:{root}?size=8x8")
    assert ds.images.shape == (10, 3, 8, 8)
    assert ds.provenance["conversions"][-1] == {
        "op": "resize",
        "to": [8, 8],
        "method": "box when shrinking, else bilinear",
    }


def test_corrupt_image_is_named_or_skipped_and_counted(tmp_path):
    root = write_tree(tmp_path / "c")
    good = (root / "dog" / "00.png").read_bytes()
    (root / "dog" / "01.png").write_bytes(good[: len(good) // 2])  # truncated
    (root / "emu" / "02.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError) as err:
        load_source(f"imagefolder:{root}")
    assert "dog/01.png" in str(err.value) and "skip_corrupt=true" in str(err.value)
    ds = load_source(f"imagefolder:{root}", skip_corrupt=True)
    assert len(ds) == 7 and ds.provenance["skipped_corrupt"] == 2
    assert load_source(f"imagefolder:{root}?skip_corrupt=true").content_hash() == ds.content_hash()


@pytest.mark.parametrize(
    "setup, named",
    [
        ("missing", "does not exist"),
        ("empty", "no class sub-folders"),
        ("single", "single class"),
        ("unsupported", "notes.txt"),
        ("gif", "anim.gif"),
        ("empty_class", "has no images"),
        ("bad_class", "'cow'"),
    ],
)
def test_bad_folders_name_the_input(tmp_path, setup, named):
    root = tmp_path / "bad"
    spec = f"imagefolder:{root}"
    if setup == "empty":
        root.mkdir()
    elif setup == "single":
        write_tree(root, classes=("cat",))
    else:
        write_tree(root)
    if setup == "unsupported":
        (root / "cat" / "notes.txt").write_text("hi")
    elif setup == "gif":
        Image.new("RGB", (4, 4)).save(root / "dog" / "anim.gif")
    elif setup == "empty_class":
        (root / "yak").mkdir()
    elif setup == "bad_class":
        spec += "?classes=cat,cow"
    if setup == "missing":
        spec = f"imagefolder:{tmp_path}/nope"
    with pytest.raises(DataError) as err:
        load_source(spec)
    msg = str(err.value)
    assert named in msg and "\n" not in msg
    assert ("nope" if setup == "missing" else str(root)) in msg


def test_parallel_decode_equals_serial(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "PARALLEL_MIN", 64)  # the pool, on few files
    per = 64 // 2 + 1
    root = write_tree(tmp_path / "p", classes=("a", "b"), per_class=per, size=(6, 6))
    serial = load_source(f"imagefolder:{root}", workers=1)
    parallel = load_source(f"imagefolder:{root}", workers=2)
    assert len(parallel) == 2 * per
    assert parallel.content_hash() == serial.content_hash()
