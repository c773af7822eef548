"""`pip install .` installs one namespace: the wheel's only top-level package is `warmstart`, so
a user's own `models`, `tasks`, `flows` or `infra` modules are left alone."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_installs_no_generic_top_level_modules(tmp_path):
    build = tmp_path / "build"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300, env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(build)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("warmstart-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"warmstart"}
    for folder in ("models", "tasks", "flows", "infra"):
        assert f"warmstart/{folder}/__init__.py" in names
    assert "warmstart/models/modes/finetune.py" in names  # sub-packages come along
    assert "warmstart/cli/__main__.py" in names
