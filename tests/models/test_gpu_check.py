"""benchmarks/gpu_check.py's CPU path at its small size: the same code a GPU run executes (data
written in the CIFAR-10 python format and read back through warmstart's reader, training to a
target accuracy, fine-tuning torchvision resnet18 with the data on the device and streamed from
the host) produces consistent numbers; on a machine without CUDA the default run says so."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks/gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("gpu_check", None)


def test_cpu_path_at_small_size(gpu_check, tmp_path, capsys):
    out = gpu_check.main(
        [
            "--device",
            "cpu",
            "--small",
            "--threads",
            "1",
            "--strategy-steps",
            "0",
            "--json",
            str(tmp_path / "g.json"),
        ]
    )
    assert json.loads((tmp_path / "g.json").read_text()) == out
    assert out["data"] == "generated CIFAR-10-format data" and out["autocast"] == "None"
    tt = out["to_target"]
    rows = tt["epochs"]
    assert 1 <= len(rows) <= 2 and tt["target_acc"] == 0.2
    # 320 images, batch 64: 5 steps of 64 images per epoch, timed
    for r in rows:
        assert r["images_per_s"] == pytest.approx(320 / r["seconds"], rel=0.02)
    assert tt["best_test_acc"] == max(r["test_acc"] for r in rows)
    # learns the generated classes: test accuracy above chance (0.1) within two epochs
    assert tt["reached"] and tt["best_test_acc"] >= 0.2
    assert tt["seconds_to_target"] == next(
        r["train_seconds_so_far"] for r in rows if r["test_acc"] >= 0.2
    )
    ft = out["finetune"]
    assert ft["size"] == 32 and ft["images"] == 16
    for where in ("device", "host"):
        e = ft[where]["epochs"][0]
        assert e["images_per_s"] == pytest.approx(16 / e["seconds"], rel=0.02)
        assert 0 < e["train_loss"] < 10
    assert ft["host_over_device"] == round(
        ft["host"]["images_per_s"] / ft["device"]["images_per_s"], 3
    )
    assert out["syncs"] == {"skipped": "needs CUDA"} and out["strategies"] == []
    assert "SUMMARY to-target 0.2: reached=True" in capsys.readouterr().out


def test_without_cuda_the_default_run_skips(gpu_check, capsys, monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == {"skipped": "no CUDA"}
    assert "skipped: no CUDA" in capsys.readouterr().out
