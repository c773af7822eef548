"""An S3-only stack for storage tests: one real SeaweedFS (``weed mini``, ~1 s to start) on free
ports in a temporary state folder, without MLflow and Prefect, that a test may stop and restart.
Import the ``seaweed`` fixture into a test module to use it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import stack_config
from warmstart import storage
from warmstart.infra import stack as stack_mod


@dataclass
class Seaweed:
    config: object  # infra.stack.StackConfig
    home: Path

    @property
    def service(self):
        return stack_mod.services(self.config)[0]

    def stop(self) -> None:
        """Stop the S3 store (the whole ``weed mini`` process)."""
        pid = stack_mod._read_pid(self.service)
        if pid is not None:
            stack_mod._stop_pid(pid)
        self.service.pid_file.unlink(missing_ok=True)

    def start(self) -> None:
        """Start it again on the same ports and data folder; returns once it answers."""
        if stack_mod._read_pid(self.service) is None:
            stack_mod._start(self.service, self.config)


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory) -> Iterator[Seaweed]:
    """SeaweedFS with credentials and a bucket; os.environ points the S3 client at it."""
    home = tmp_path_factory.mktemp("seaweed-home")
    cfg = stack_config(home)
    env = {
        k: v
        for k, v in stack_mod.client_env(cfg).items()
        if k.startswith("AWS_") or k == "WARMSTART_BUCKET"
    }
    saved = {k: os.environ.get(k) for k in [*env, "WARMSTART_HOME", "AWS_ENDPOINT_URL_S3"]}
    store = Seaweed(cfg, home)
    store.start()
    os.environ.update(env)
    os.environ["WARMSTART_HOME"] = str(home)
    os.environ.pop("AWS_ENDPOINT_URL_S3", None)
    try:
        # `weed mini -bucket=` creates the bucket a moment after the port answers (403):
        # under load a test can get there first, so make sure it exists.
        storage.ensure_bucket(cfg.bucket)
        yield store
    finally:
        store.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
