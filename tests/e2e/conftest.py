"""Fixtures for the browser end-to-end tests: Debian's chromium driven by Playwright (no browser
download), a deployed pipeline with a live worker, and a folder for step screenshots."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "e2e"  # git-ignored (`test-output/`)

# Debian's chromium in a container: no sandbox (root), no GPU, and nothing that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """The system chromium: $WARMSTART_CHROMIUM, /usr/bin/chromium, or `chromium` on PATH."""
    for candidate in (os.environ.get("WARMSTART_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "chromium not found (WARMSTART_CHROMIUM, /usr/bin/chromium, PATH): "
            "install it with `bash infra/install-browser.sh` (or `make e2e-deps`)"
        )
    return path


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[object]:
    """One headless chromium for the module; Playwright only drives it, never downloads one."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        except Exception as exc:  # noqa: BLE001 - a broken install is a skip, with the reason
            pytest.skip(f"chromium at {chromium} did not start ({exc}); reinstall it")
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def deployed(stack) -> dict:
    """deploy/prefect.yaml registered on the test stack, and a process worker polling its pool."""
    from warmstart.infra.deploy import deploy

    names, worker_pid = deploy(stack.config)
    return {"names": names, "worker_pid": worker_pid}


@pytest.fixture
def shots(request) -> Path:
    """test-output/e2e/<test name>/: emptied first, so every PNG there is from this run."""
    folder = OUTPUT / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
