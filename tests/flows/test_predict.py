"""Batch prediction: image conversion rules (fast, no services), then the `warmstart predict`
command and the `batch-predict` flow against the real SeaweedFS, MLflow and Prefect servers,
with a small classifier of UCI digits 5-9 registered through the tracking layer."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from warmstart import predict as wp
from warmstart.errors import ConfigError, DataError

PER_CLASS = 12  # images per digit written to the test folders


def _png(array_hw_or_hwc: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array_hw_or_hwc, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _png16(h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w), 40000, dtype=np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------ conversions (no services)


def test_gray_to_rgb_replicates_and_rgb_to_gray_is_luma():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    arr, done = wp.convert_image(_png(gray), "g.png", channels=3, size=(8, 8))
    assert arr.shape == (3, 8, 8) and done == ["gray->rgb"]
    assert (arr == gray[None]).all()

    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # pure red → luma 0.299 * 200 ≈ 60
    arr, done = wp.convert_image(_png(rgb), "r.png", channels=1, size=(8, 8))
    assert arr.shape == (1, 8, 8) and done == ["rgb->gray"]
    assert int(arr[0, 0, 0]) == 60


def test_resize_shrinks_by_area_and_enlarges_up_to_8x():
    img = np.zeros((16, 16), dtype=np.uint8)
    img[:8] = 255  # top half white
    arr, done = wp.convert_image(_png(img), "big.png", channels=1, size=(8, 8))
    assert done == ["resize 16x16->8x8"]
    assert (arr[0, :4] == 255).all() and (arr[0, 4:] == 0).all()
    arr, _ = wp.convert_image(
        _png(np.full((2, 2), 7, np.uint8)), "s.png", channels=1, size=(16, 16)
    )
    assert arr.shape == (1, 16, 16) and (arr == 7).all()  # exactly 8x: allowed


@pytest.mark.parametrize(
    ("data", "size", "words"),
    [
        (_png(np.zeros((1, 1), np.uint8)), (16, 16), ["1x1", "16.0x enlargement", "at most 8x"]),
        (_png(np.zeros((4, 64), np.uint8)), (8, 8), ["64x4", "aspect ratio 16.0x"]),
        (_png16(8, 8), (8, 8), ["I;16", "8-bit"]),
        (b"not an image at all", (8, 8), ["not a readable image"]),
    ],
    ids=["upscale-16x", "aspect-16x", "16-bit", "garbage"],
)
def test_unconvertible_images_are_refused_naming_the_file(data, size, words):
    with pytest.raises(DataError) as info:
        wp.convert_image(data, "photos/x17.png", channels=1, size=size)
    msg = str(info.value)
    assert "photos/x17.png" in msg and "\n" not in msg
    for word in words:
        assert word in msg


def test_list_images_walks_sorted_skips_hidden_and_other_files(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b" / "c.jpg").write_bytes(b"x")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_bytes(b"x")
    found, skipped = wp.list_images(str(tmp_path))
    assert [n for n, _ in found] == ["a.png", "b/c.jpg"] and skipped == []
    assert wp.list_images(str(tmp_path / "a.png")) == ([("a.png", str(tmp_path / "a.png"))], [])
    (tmp_path / "b" / "notes.txt").write_text("hello")
    (tmp_path / "README").write_text("hello")
    found, skipped = wp.list_images(str(tmp_path))
    assert [n for n, _ in found] == ["a.png", "b/c.jpg"]
    assert skipped == ["README", "b/notes.txt"]
    with pytest.raises(DataError, match=r"holds no images .*only 1 other file\(s\) such as x\.txt"):
        only = tmp_path / "only"
        only.mkdir()
        (only / "x.txt").write_text("x")
        wp.list_images(str(only))
    with pytest.raises(DataError, match="does not exist"):
        wp.list_images(str(tmp_path / "missing"))


def test_top_k_layout_is_most_probable_first():
    from warmstart.reports.predict import predictions_frame

    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    one = predictions_frame(["a.png", "b.png"], ["x", "y", "z"], probs)
    assert list(one.columns) == ["file", "class", "probability"]
    assert list(one["class"]) == ["y", "x"] and list(one["probability"]) == [0.6, 0.5]
    two = predictions_frame(["a.png", "b.png"], ["x", "y", "z"], probs, 2)
    assert list(two.columns) == ["file", "class_1", "probability_1", "class_2", "probability_2"]
    assert list(two.iloc[0])[1:] == ["y", 0.6, "z", 0.3]
    assert list(two.iloc[1])[1:] == ["x", 0.5, "z", 0.3]


def test_top_k_must_fit_the_model():
    from warmstart.reports.predict import check_top_k

    check_top_k(5, 5)
    with pytest.raises(ConfigError, match=r"^--top-k 6: use 1\.\.5 \(the model has 5 classes\)$"):
        check_top_k(6, 5)
    with pytest.raises(ConfigError, match=r"^--top-k 0: use 1 or more$"):
        check_top_k(0)


def test_evaluation_needs_every_image_in_a_class_folder():
    from warmstart.reports.predict import confusion_path, evaluate

    files = ["5/a.png", "5/b.png", "6/c.png", "6/sub/d.png"]
    scored = evaluate(files, ["5", "6"], np.array([0, 1, 1, 1]))
    assert scored["accuracy"] == 0.75 and scored["labelled"] == 4
    assert scored["confusion"].values.tolist() == [["5", 1, 1], ["6", 0, 2]]
    assert evaluate([*files, "e.png"], ["5", "6"], np.zeros(5, int)) is None
    assert evaluate(["7/a.png"], ["5", "6"], np.zeros(1, int)) is None
    assert confusion_path("out/preds.csv") == "out/preds.confusion.csv"
    assert confusion_path("s3://b/p.parquet") == "s3://b/p.confusion.csv"


def test_output_must_be_csv_or_parquet():
    assert wp.check_out("p.csv") == "csv" and wp.check_out("s3://b/k/p.parquet") == "parquet"
    with pytest.raises(ConfigError, match=r"\.csv or \.parquet"):
        wp.check_out("preds.json")


def test_softmax_rows_are_distributions():
    p = wp.softmax(np.array([[1000.0, 0.0], [0.0, 0.0], [-3.0, 2.0]]))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert p[0, 0] == pytest.approx(1.0) and p[1, 0] == pytest.approx(0.5)


# ------------------------------------------------------------------ against the services


def _train_digits_classifier(ds):
    """A linear classifier of UCI digits 5-9 (8×8), trained in a second on all but the last
    PER_CLASS images of each class (those are the prediction inputs)."""
    import torch

    keep = np.ones(len(ds.labels), dtype=bool)
    for label in range(len(ds.classes)):
        keep[np.flatnonzero(ds.labels == label)[-PER_CLASS:]] = False
    x = torch.from_numpy(ds.images[keep].astype(np.float32) / 255.0)
    y = torch.from_numpy(ds.labels[keep].astype(np.int64))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, len(ds.classes)))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    return model, x[:4].numpy(), accuracy


@pytest.fixture(scope="module")
def model(stack):
    """A registered version of a digits classifier, also under a test alias. Registered through
    the tracking layer directly (the target dataset stored in S3 gives the class names)."""
    from warmstart import tracking
    from warmstart.data import load_source, store_dataset

    ds = load_source("builtin:uci-digits?classes=5-9")
    ref = store_dataset(ds)
    net, example, accuracy = _train_digits_classifier(ds)
    name = tracking.model_name_for(f"predict-test-{uuid.uuid4().hex[:6]}")
    run_id = tracking.start_run(tracking.experiment_id("predict-test"), "finetune-target[test]")
    logged = tracking.log_model(run_id, net, example=example, classes=ds.classes)
    tracking.end_run(run_id)
    tracking.ensure_registered_model(name)
    version = tracking.create_version(
        name, logged.uri, run_id=run_id, tags={"target_dataset_hash": ref.hash}
    ).version
    tracking.set_alias(name, "predict-test", version)
    return {
        "train_accuracy": accuracy,
        "version_uri": f"models:/{name}/{version}",
        "alias_uri": f"models:/{name}@predict-test",
    }


@pytest.fixture(scope="module")
def digits():
    """PER_CLASS images of each digit 5-9 (the target's classes), uint8 8×8."""
    from warmstart.data import load_source

    ds = load_source("builtin:uci-digits?classes=5-9")
    picks = {}
    for label, name in enumerate(ds.classes):
        idx = np.flatnonzero(ds.labels == label)[-PER_CLASS:]  # the last ones: rarely in k-shot
        picks[name] = ds.images[idx, 0]
    return picks


def _write_folder(root: Path, digits: dict) -> int:
    n = 0
    for name, images in digits.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            (root / name / f"{i:03d}.png").write_bytes(_png(img))
            n += 1
    return n


def _accuracy(frame: pd.DataFrame) -> float:
    truth = frame["file"].str.split("/").str[0]
    return float((frame["class"].astype(str) == truth).mean())


def _check_frame(frame: pd.DataFrame, n: int) -> None:
    assert list(frame.columns) == ["file", "class", "probability"]
    assert len(frame) == n and frame["file"].is_unique
    assert frame["probability"].between(0.0, 1.0).all()
    assert (frame["probability"] >= 1 / 5 - 1e-9).all()  # the argmax of 5 classes
    assert set(frame["class"].astype(str)) <= {"5", "6", "7", "8", "9"}


def _cli(*args: str) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).parent / "warmstart"  # the installed console script
    return subprocess.run(
        [str(cli), "predict", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )


@pytest.mark.services
@pytest.mark.slow
def test_cli_predicts_an_imagefolder_to_csv(model, digits, tmp_path):
    n = _write_folder(tmp_path / "digits", digits)
    out = tmp_path / "out" / "preds.csv"
    proc = _cli("--model", model["alias_uri"], str(tmp_path / "digits"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"{n} predictions by {model['version_uri']}" in proc.stdout
    frame = pd.read_csv(out, dtype={"class": str})
    _check_frame(frame, n)
    acc = _accuracy(frame)
    trained = model["train_accuracy"]
    print(f"CLI accuracy on {n} digits: {acc:.3f} (training accuracy {trained:.3f})")
    assert acc >= 0.6  # chance is 0.2
    assert acc >= trained - 0.2
    confusion = out.parent / "preds.confusion.csv"
    assert f"accuracy {acc:.3f} on {n} images labelled" in proc.stdout
    assert str(confusion) in proc.stdout
    matrix = pd.read_csv(confusion, dtype={"true": str})
    assert list(matrix["true"]) == ["5", "6", "7", "8", "9"]
    assert list(matrix.columns) == ["true", "5", "6", "7", "8", "9"]
    counts = matrix.drop(columns="true").to_numpy()
    assert counts.sum() == n and (counts.sum(axis=1) == PER_CLASS).all()
    assert np.trace(counts) / n == pytest.approx(acc)


@pytest.mark.services
@pytest.mark.slow
def test_cli_skips_non_image_files_and_writes_top_k(model, digits, tmp_path):
    n = _write_folder(tmp_path / "in", {k: v[:2] for k, v in digits.items()})
    (tmp_path / "in" / "notes.txt").write_text("not a digit")
    (tmp_path / "in" / "5" / "labels.json").write_text("{}")
    out = tmp_path / "top3.csv"
    proc = _cli(
        "--model", model["version_uri"], str(tmp_path / "in"), "--out", str(out), "--top-k", "3"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{n} predictions by" in proc.stdout
    assert "skipped 2 file(s) that are not images: 5/labels.json, notes.txt" in proc.stderr
    frame = pd.read_csv(out, dtype={"class_1": str, "class_2": str, "class_3": str})
    assert list(frame.columns) == [
        "file",
        "class_1",
        "probability_1",
        "class_2",
        "probability_2",
        "class_3",
        "probability_3",
    ]
    assert len(frame) == n and "notes.txt" not in set(frame["file"])
    assert (frame["probability_1"] >= frame["probability_2"]).all()
    assert (frame["probability_2"] >= frame["probability_3"]).all()
    assert (
        frame[["probability_1", "probability_2", "probability_3"]].sum(axis=1) <= 1 + 1e-9
    ).all()
    assert (frame["class_1"] != frame["class_2"]).all()
    # the labelled folder is still scored (the stray files are not images, so not counted)
    assert f"on {n} images labelled" in proc.stdout
    proc = _cli(
        "--model", model["version_uri"], str(tmp_path / "in"), "--out", str(out), "--top-k", "6"
    )
    assert proc.returncode == 2 and "--top-k 6: use 1..5" in proc.stderr


@pytest.mark.services
@pytest.mark.slow
def test_flow_predicts_from_s3_to_s3_parquet(model, digits, tmp_path):
    from warmstart import storage
    from warmstart.flows.predict import batch_predict

    prefix = storage.uri("predict-test", uuid.uuid4().hex[:8])
    n = 0
    for name, images in digits.items():
        for i, img in enumerate(images):
            storage.put_bytes(prefix.child(f"in/{name}/{i:03d}.png"), _png(img))
            n += 1
    out = prefix.child("out/preds.parquet")
    result = batch_predict(model["version_uri"], f"{prefix.child('in')}/", str(out))
    assert result["images"] == n and result["out"] == str(out)
    assert result["input_shape"] == [1, 8, 8]
    assert result["classes"] == ["5", "6", "7", "8", "9"]
    assert result["classes_from"].startswith("dataset ")
    frame = pd.read_parquet(io.BytesIO(storage.get_bytes(out)))
    _check_frame(frame, n)
    assert _accuracy(frame) >= 0.6
    assert result["accuracy"] == pytest.approx(_accuracy(frame)) and result["labelled"] == n
    assert result["confusion"] == str(prefix.child("out/preds.confusion.csv"))
    matrix = pd.read_csv(io.BytesIO(storage.get_bytes(prefix.child("out/preds.confusion.csv"))))
    assert matrix.drop(columns="true").to_numpy().sum() == n


@pytest.mark.services
@pytest.mark.slow
def test_flat_folder_of_rgb_images_is_converted_explicitly(model, digits, tmp_path):
    """No class sub-folders; 16×16 RGB images for an 8×8 gray model: converted and reported."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for name, images in digits.items():
        for i, img in enumerate(images[:2]):
            big = np.asarray(Image.fromarray(img).resize((16, 16), Image.Resampling.NEAREST))
            (flat / f"{name}-{i}.png").write_bytes(_png(np.stack([big] * 3, axis=-1)))
    result = wp.predict(model["version_uri"], str(flat), str(tmp_path / "flat.parquet"))
    assert result["images"] == 10
    assert result["conversions"] == {"rgb->gray": 10, "resize 16x16->8x8": 10}
    assert result["accuracy"] is None and result["confusion"] is None  # no class folders
    assert not (tmp_path / "flat.confusion.csv").exists()
    frame = pd.read_parquet(tmp_path / "flat.parquet")
    _check_frame(frame, 10)
    # nearest ×2 then box ÷2 restores each pixel exactly: the predictions are the digits'
    assert (frame["class"] == frame["file"].str[0]).mean() >= 0.6


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.parametrize("case", ["undecodable", "wrong-model", "16-bit", "bad-out"])
def test_cli_refuses_bad_inputs_in_one_line_with_exit_2(model, digits, tmp_path, case):
    folder = tmp_path / "in"
    _write_folder(folder, {k: v[:2] for k, v in digits.items()})
    uri, out, expect = model["version_uri"], str(tmp_path / "p.csv"), []
    if case == "undecodable":  # an image by its name that cannot be converted: refused
        (folder / "5" / "broken.png").write_text("not a digit")
        expect = ["broken.png", "is not a readable image"]
    elif case == "wrong-model":
        uri, expect = "models:/warmstart-no-such-target@champion", ["not found", "no-such-target"]
    elif case == "16-bit":
        (folder / "6" / "deep.png").write_bytes(_png16(8, 8))
        expect = ["deep.png", "8-bit"]
    else:
        out, expect = str(tmp_path / "p.json"), ["p.json", ".csv or .parquet"]
    proc = _cli("--model", uri, str(folder), "--out", out)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for word in expect:
        assert word in lines[0]
    assert not Path(out).exists()


# ------------------------------------------------------------------ export (same registered model)


@pytest.fixture(scope="module")
def hundred_digits():
    """100 images of the target (the last 20 of each digit 5-9), uint8 N×1×8×8."""
    from warmstart.data import load_source

    ds = load_source("builtin:uci-digits?classes=5-9")
    idx = np.concatenate([np.flatnonzero(ds.labels == c)[-20:] for c in range(len(ds.classes))])
    return ds.images[idx]


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.services
@pytest.mark.slow
def _predict_ten(model, digits, tmp_path: Path) -> tuple[dict, pd.DataFrame]:
    """Two digits per class as PNG files under ``tmp_path/ten`` and `warmstart predict`'s CSV of
    them (the classes the exports and the server are compared with)."""
    ten = {k: v[:2] for k, v in digits.items()}
    _write_folder(tmp_path / "ten", ten)
    out = tmp_path / "ten.csv"
    assert (
        _cli("--model", model["version_uri"], str(tmp_path / "ten"), "--out", str(out)).returncode
        == 0
    )
    return ten, pd.read_csv(out, dtype={"class": str})


def test_cli_exports_onnx_that_matches_torch_and_predict(
    model, hundred_digits, digits, tmp_path, monkeypatch
):
    """`warmstart export --format onnx`: onnxruntime on 100 images within 1e-4 of the registered
    graph in torch (through the same pyfunc `warmstart predict` loads), the same classes as
    `warmstart predict` on PNG files, and the file kept beside the version."""
    import json

    from warmstart import export as wx
    from warmstart import tracking

    cli = Path(sys.executable).parent / "warmstart"
    out = tmp_path / "export"  # the README's folder: its example runs below as written
    proc = subprocess.run(
        [str(cli), "export", model["alias_uri"], "--format", "onnx", "--out", str(out)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    onnx_file = out / "model.onnx"
    assert f"onnx export of {model['version_uri']} -> {onnx_file}" in proc.stdout
    meta = json.loads((out / "model.json").read_text())
    assert meta["input"] == {
        "name": "image",
        "dtype": "uint8",
        "shape": ["N", 1, 8, 8],
        "range": [0, 255],
    }
    assert meta["classes"] == ["5", "6", "7", "8", "9"] and meta["sha256"] == _sha256(onnx_file)
    assert meta["parity"]["max_abs_diff"] <= 1e-4

    got = wx.run_export(onnx_file, "onnx", hundred_digits)  # onnxruntime
    served = wp.resolve_model(model["version_uri"])
    pyfunc = tracking.load_pyfunc(served.uri)
    want = tracking.predict_logits(pyfunc, served.uri, hundred_digits.astype(np.float32) / 255.0)
    assert got.shape == (100, 5)
    diff = float(np.abs(got - want).max())
    print(f"onnxruntime vs torch on 100 digits: max abs diff {diff:.2e}")
    assert diff <= 1e-4
    assert (got.argmax(1) == wp.run_model(served, hundred_digits).argmax(1)).all()

    # the same classes as `warmstart predict` on ten PNG files
    ten, frame = _predict_ten(model, digits, tmp_path)
    stacked = np.stack([ten[f.split("/")[0]][int(f[-7:-4])] for f in frame["file"]])[:, None]
    onnx_classes = [meta["classes"][i] for i in wx.run_export(onnx_file, "onnx", stacked).argmax(1)]
    assert onnx_classes == list(frame["class"])
    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    example = readme.split("\n### Export\n", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope = {"files": [str(tmp_path / "ten" / f) for f in frame["file"]]}
    exec(compile(example, "README.md", "exec"), scope)
    assert scope["classes"] == list(frame["class"])

    name, version = model["version_uri"].split("/")[1:]
    tags = tracking.version_by_alias(name, "predict-test").tags
    assert tags["export.onnx.sha256"] == meta["sha256"]
    assert tags["export.onnx.uri"].endswith(f"/exports/v{version}/onnx")


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "exported-program"])
def test_torch_exports_match_torch(model, hundred_digits, tmp_path, fmt):
    from warmstart import export as wx

    meta = wx.export(model["version_uri"], fmt, str(tmp_path), images=hundred_digits, log=False)
    assert meta["parity"]["images"] == 100 and meta["parity"]["max_abs_diff"] <= 1e-4
    assert meta["logged_to"] is None and Path(meta["path"]).name == wx.FORMATS[fmt]
    served = wp.resolve_model(model["version_uri"])
    again = wx.run_export(Path(meta["path"]), fmt, hundred_digits[:10])
    assert (again.argmax(1) == wp.run_model(served, hundred_digits[:10]).argmax(1)).all()


def test_export_refuses_an_unknown_format_and_a_file_as_folder(tmp_path):
    from warmstart import export as wx

    with pytest.raises(ConfigError, match=r"^--format tflite: use one of onnx, torchscript, "):
        wx.export("models:/x/1", "tflite", str(tmp_path))
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"^--out .*/f: is a file"):
        wx.export("models:/x/1", "onnx", str(tmp_path / "f"))


# ------------------------------------------------------------------ the image pyfunc, served


def _serve(uri: str, port: int, log: Path) -> subprocess.Popen:
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    return subprocess.Popen(
        [
            str(mlflow_cli),
            "models",
            "serve",
            "-m",
            uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),  # a file: a pipe nobody reads would fill and stall the server
        # the venv's bin first: the server execs `uvicorn` by name
        env={**os.environ, "PATH": f"{mlflow_cli.parent}{os.pathsep}{os.environ['PATH']}"},
        start_new_session=True,
    )


def _wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 240.0) -> None:
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"mlflow models serve exited: {proc.stderr.read().decode()[-2000:]}"
            )
        try:
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError("mlflow models serve did not answer /ping in time")


@pytest.mark.services
@pytest.mark.slow
def test_served_champion_takes_png_and_jpeg_and_returns_class_names(model, digits, tmp_path):
    """`mlflow models serve` on the registered version; a real HTTP client posts PNG and JPEG
    files (base64 in JSON) and gets the classes `warmstart predict` gives, with probabilities."""
    import base64
    import signal

    import httpx

    from tests.conftest import free_ports

    ten, frame = _predict_ten(model, digits, tmp_path)
    pngs = [(tmp_path / "ten" / f).read_bytes() for f in frame["file"]]
    jpeg = io.BytesIO()
    Image.fromarray(ten["7"][0]).resize((32, 32)).save(jpeg, format="JPEG", quality=95)

    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    proc = _serve(model["version_uri"], port, log)
    try:
        _wait_ready(proc, url, log)
        rows = [[base64.b64encode(b).decode()] for b in [*pngs, jpeg.getvalue()]]
        reply = httpx.post(
            f"{url}/invocations",
            json={"dataframe_split": {"columns": ["image"], "data": rows}},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        predictions = reply.json()["predictions"]
        bad = httpx.post(
            f"{url}/invocations",
            json={"dataframe_split": {"columns": ["image"], "data": [["bm90IGFuIGltYWdl"]]}},
            timeout=60,
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert len(predictions) == 11
    assert [p["class"] for p in predictions[:10]] == list(frame["class"])
    assert [round(p["probability"], 6) for p in predictions[:10]] == [
        round(p, 6) for p in frame["probability"]
    ]
    for p in predictions:
        assert len(p["probabilities"]) == 5
        assert sum(p["probabilities"]) == pytest.approx(1.0)
        assert p["probability"] == pytest.approx(max(p["probabilities"]))
    assert predictions[10]["class"] in {"5", "6", "7", "8", "9"}  # a 32x32 JPEG, resized
    assert bad.status_code >= 400 and "row 0 is not a readable image" in bad.text


@pytest.mark.services
@pytest.mark.slow
def test_pyfunc_in_process_takes_bytes_and_tensors(model, digits):
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(model["version_uri"])
    png = _png(digits["8"][0])
    out = pyfunc.predict(pd.DataFrame({"image": [png, png]}))
    assert list(out.columns) == ["class", "probability", "probabilities"]
    assert out["class"].tolist()[0] == out["class"].tolist()[1]
    logits = pyfunc.unwrap_python_model().logits(digits["8"][:1][:, None] / 255.0)
    assert logits.shape == (1, 5)
    assert out["class"][0] == ["5", "6", "7", "8", "9"][int(logits.argmax())]
