"""Background checkpoint uploads (issue 25): the trainer goes on while its epoch's checkpoint is
uploaded, the bucket is never more than one epoch behind, an upload sees the epoch it was handed
(not a later one written meanwhile), and an upload's error is not lost."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from warmstart.stages.weights import epoch_uploads


class SlowStore:
    """Records what each upload read; the first upload blocks until released."""

    def __init__(self, fail: bool = False) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.uploaded: list[dict] = []
        self.fail = fail

    def push_checkpoint_dir(self, ckpt_dir: Path, files_from: Path | None = None) -> None:
        self.started.set()
        self.release.wait(10)
        if self.fail:
            raise OSError("bucket unreachable")
        src = files_from or ckpt_dir
        files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
        self.uploaded.append({"meta": json.loads((src / "meta.json").read_text()), "files": files})


def failing_store() -> SlowStore:
    """A store whose every upload fails at once."""
    store = SlowStore(fail=True)
    store.release.set()
    return store


def write_epoch(ckpt: Path, epoch: int) -> Path:
    """As ``save_checkpoint`` does: a new weights file per epoch, meta.json replaced atomically,
    the previous epoch's weights removed."""
    ckpt.mkdir(parents=True, exist_ok=True)
    weights = ckpt / f"weights_e{epoch}.safetensors"
    weights.write_bytes(bytes([epoch]) * 16)
    tmp = ckpt / "meta.json.tmp"
    tmp.write_text(json.dumps({"epoch": epoch, "weights": weights.name}))
    tmp.replace(ckpt / "meta.json")
    (ckpt / f"weights_e{epoch - 1}.safetensors").unlink(missing_ok=True)
    return weights


def test_upload_reads_its_own_epoch_and_the_bucket_is_at_most_one_epoch_behind(tmp_path):
    store, reported = SlowStore(), []
    ckpt = tmp_path / "stage" / "ckpt"
    with epoch_uploads(store, ckpt, lambda e, m: reported.append(e)) as on_epoch_end:
        on_epoch_end(1, {"loss": 1.0}, write_epoch(ckpt, 1))
        assert store.started.wait(5)
        assert reported == [1] and store.uploaded == []  # the trainer went on before the upload
        write_epoch(ckpt, 2)  # the trainer writes epoch 2 while epoch 1 is still uploading
        threading.Timer(0.3, store.release.set).start()
        on_epoch_end(2, {"loss": 0.5}, ckpt / "weights_e2.safetensors")
        # handing over epoch 2 waited for epoch 1 to land: never two epochs behind
        assert [u["meta"]["epoch"] for u in store.uploaded] == [1]
    assert [u["meta"]["epoch"] for u in store.uploaded] == [1, 2]  # the last one landed at close
    assert store.uploaded[0]["files"] == ["meta.json", "weights_e1.safetensors"]
    assert store.uploaded[1]["files"] == ["meta.json", "weights_e2.safetensors"]
    assert reported == [1, 2]
    assert not (tmp_path / "stage" / "ckpt-uploading").exists()  # snapshots cleaned up


def test_an_upload_error_fails_the_stage_at_close(tmp_path):
    store = failing_store()
    ckpt = tmp_path / "ckpt"
    with pytest.raises(OSError, match="bucket unreachable"):
        with epoch_uploads(store, ckpt, lambda e, m: None) as on_epoch_end:
            on_epoch_end(1, {}, write_epoch(ckpt, 1))


def test_an_upload_error_fails_the_next_epoch(tmp_path):
    store = failing_store()
    ckpt = tmp_path / "ckpt"
    reported = []
    with pytest.raises(OSError, match="bucket unreachable"):
        with epoch_uploads(store, ckpt, lambda e, m: reported.append(e)) as on_epoch_end:
            on_epoch_end(1, {}, write_epoch(ckpt, 1))
            on_epoch_end(2, {}, write_epoch(ckpt, 2))
    assert reported == [1]  # epoch 2 was not reported: the stage stopped at its upload


def test_a_failing_stage_raises_its_own_error_not_the_upload_one(tmp_path):
    store = failing_store()
    ckpt = tmp_path / "ckpt"
    with pytest.raises(RuntimeError, match="training diverged"):
        with epoch_uploads(store, ckpt, lambda e, m: None) as on_epoch_end:
            on_epoch_end(1, {}, write_epoch(ckpt, 1))
            raise RuntimeError("training diverged")
    assert not (tmp_path / "ckpt-uploading").exists()


def test_an_epoch_without_a_checkpoint_uploads_nothing(tmp_path):
    store, reported = SlowStore(), []
    store.release.set()
    with epoch_uploads(store, tmp_path / "ckpt", lambda e, m: reported.append(e)) as on_epoch_end:
        on_epoch_end(1, {}, None)
    assert reported == [1] and store.uploaded == []
