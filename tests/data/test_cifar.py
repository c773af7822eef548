import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torchvision

from tests.data.helpers import BATCHES, CIFAR_CLASSES, md5, tar_folder, write_cifar
from warmstart.data import load_source, make_splits
from warmstart.data.safety import read_tar, restricted_loads, safe_extract
from warmstart.errors import DataError


@pytest.fixture
def cifar_root(tmp_path):
    write_cifar(tmp_path / "root", per_batch=8)
    return tmp_path / "root"


def _torchvision(root, monkeypatch, train):
    folder = root / "cifar-10-batches-py"
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[b, md5(folder / b)] for b in BATCHES[:5]])
    monkeypatch.setattr(cls, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(folder / "batches.meta")})
    return cls(str(root), train=train, download=False)


def test_same_images_labels_classes_as_torchvision(cifar_root, monkeypatch):
    ds = load_source(f"cifar10:{cifar_root}")
    tv_train = _torchvision(cifar_root, monkeypatch, train=True)
    tv_test = _torchvision(cifar_root, monkeypatch, train=False)
    assert ds.classes == tv_train.classes == CIFAR_CLASSES
    train, test = ~ds.predefined_test, ds.predefined_test
    np.testing.assert_array_equal(ds.images[train], tv_train.data.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.labels[train], tv_train.targets)
    np.testing.assert_array_equal(ds.images[test], tv_test.data.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.labels[test], tv_test.targets)
    assert (len(ds), int(test.sum())) == (48, 8) and ds.name == "cifar10"


def test_archive_folder_and_batches_folder_agree(cifar_root, tmp_path):
    archive = tar_folder(cifar_root / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    a = load_source(f"cifar10:{cifar_root}")
    b = load_source(f"cifar10:{archive}")
    c = load_source(f"cifar10:{cifar_root / 'cifar-10-batches-py'}")
    assert a.content_hash() == b.content_hash() == c.content_hash()


def test_python2_style_bytes_keys_are_read(tmp_path):
    write_cifar(tmp_path, per_batch=4, bytes_keys=True)
    ds = load_source(f"cifar10:{tmp_path}")
    assert len(ds) == 24 and ds.classes == CIFAR_CLASSES


def test_predefined_test_becomes_the_test_split(cifar_root):
    ds = load_source(f"cifar10:{cifar_root}?classes=0-9")
    s = make_splits(ds, seed=0)
    np.testing.assert_array_equal(s.test, np.flatnonzero(ds.predefined_test))


def test_options_apply_to_cifar(cifar_root):
    ds = load_source(f"cifar10:{cifar_root}?channels=1&size=16x16&classes=cat,dog")
    assert ds.images.shape[1:] == (1, 16, 16) and ds.classes == ["cat", "dog"]
    assert ds.predefined_test is not None and len(ds.predefined_test) == len(ds)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_restricted_unpickler_refuses_code(cifar_root, tmp_path):
    target = tmp_path / "pwned"
    bad = pickle.dumps({"data": _Evil(str(target)), "labels": []}, protocol=2)
    (cifar_root / "cifar-10-batches-py" / "data_batch_3").write_bytes(bad)
    with pytest.raises(DataError) as err:
        load_source(f"cifar10:{cifar_root}")
    assert "data_batch_3" in str(err.value) and "posix.mkdir" in str(err.value)
    assert not target.exists()


def test_restricted_unpickler_refuses_other_codecs():
    payload = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R."
    with pytest.raises(DataError, match="zlib"):
        restricted_loads(payload, where="x")


def _rewrite(root, name, entry):
    (root / "cifar-10-batches-py" / name).write_bytes(pickle.dumps(entry, protocol=2))


@pytest.mark.parametrize(
    "entry, named",
    [
        ({"data": np.zeros((4, 3000), np.uint8), "labels": [0] * 4}, "(N, 3072)"),
        ({"data": np.zeros((4, 3072), np.uint8), "labels": [0] * 3}, "3 labels for 4 images"),
        ({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 10]}, "outside 0..9"),
        ({"data": np.zeros((4, 3072), np.float32), "labels": [0] * 4}, "uint8"),
        ([1, 2], "not a dict"),
    ],
)
def test_inconsistent_batches_name_the_batch(cifar_root, entry, named):
    _rewrite(cifar_root, "data_batch_2", entry)
    with pytest.raises(DataError) as err:
        load_source(f"cifar10:{cifar_root}")
    assert "data_batch_2" in str(err.value) and named in str(err.value)


def test_missing_batch_and_missing_path_are_named(cifar_root, tmp_path):
    (cifar_root / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match="lacks test_batch"):
        load_source(f"cifar10:{cifar_root}")
    with pytest.raises(DataError) as err:
        load_source(f"cifar10:{tmp_path / 'nowhere'}")
    assert "nowhere" in str(err.value) and "does not exist" in str(err.value)


def _tar_with(path, member: tarfile.TarInfo, data: bytes = b""):
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(member, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize(
    "kind, named",
    [
        ("symlink", "is a link"),
        ("hardlink", "is a link"),
        ("absolute", "absolute"),
        ("dotdot", "'..'"),
    ],
)
def test_unsafe_archive_members_are_refused(tmp_path, kind, named):
    member = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
    if kind == "symlink":
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        member.type, member.linkname = tarfile.LNKTYPE, "/etc/passwd"
    elif kind == "absolute":
        member.name = "/tmp/evil"
    else:
        member.name = "../../evil"
    data = b"" if kind in ("symlink", "hardlink") else b"x"
    member.size = len(data)
    archive = _tar_with(tmp_path / "bad.tar.gz", member, data)
    with pytest.raises(DataError) as err:
        load_source(f"cifar10:{archive}")
    assert named in str(err.value) and "bad.tar.gz" in str(err.value)
    with pytest.raises(DataError):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_archive_size_caps(tmp_path):
    member = tarfile.TarInfo("big/data_batch_1")
    member.size = 2048
    archive = _tar_with(tmp_path / "big.tar.gz", member, b"\0" * 2048)
    with pytest.raises(DataError, match="over the 1024-byte cap"):
        read_tar(archive, max_member=1024)
    with pytest.raises(DataError, match="over 1000 bytes"):
        read_tar(archive, max_total=1000)
    written = safe_extract(archive, tmp_path / "out")
    assert written == [(tmp_path / "out" / "big" / "data_batch_1").resolve()]
