"""A private SeaweedFS (S3 only) on free ports for the data benchmarks; stopped on exit.

with seaweedfs(tmp) as bucket: ...   # os.environ points boto3 at it meanwhile
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from warmstart.infra import ports


def free_ports(n: int) -> list[int]:
    """n free ports in 20000-29999 whose port+10000 (SeaweedFS gRPC) is free too."""
    return ports.free_ports(n, grpc=True)


@contextmanager
def seaweedfs(home: Path, bucket: str = "bench") -> Iterator[str]:
    from warmstart import storage
    from warmstart.infra.config import StackConfig
    from warmstart.infra.credentials import s3_env, write_env_file
    from warmstart.infra.files import make_private, private_dir
    from warmstart.infra.processes import stop_pid
    from warmstart.infra.services import services
    from warmstart.infra.stack import start_service

    s3, master, volume, filer, admin, mlflow, prefect = free_ports(7)
    cfg = StackConfig(
        home=home,
        bucket=bucket,
        s3_port=s3,
        master_port=master,
        volume_port=volume,
        filer_port=filer,
        admin_port=admin,
        mlflow_port=mlflow,
        prefect_port=prefect,
        start_timeout=180,
    )
    private_dir(home)
    make_private(home)
    write_env_file(cfg)
    saved = dict(os.environ)
    pid = start_service(services(cfg)[0], cfg)
    try:
        os.environ.update(s3_env(cfg))
        os.environ["WARMSTART_BUCKET"] = bucket
        os.environ["WARMSTART_HOME"] = str(home)
        storage.reset_clients()
        storage.ensure_bucket(bucket)
        yield bucket
    finally:
        stop_pid(pid)
        os.environ.clear()
        os.environ.update(saved)
