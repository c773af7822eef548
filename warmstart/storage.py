"""The one storage module: an S3 client configured from the standard environment, and the few
operations everything else needs. Other modules ask it for URIs and bytes, never build clients.

Production: point ``AWS_ENDPOINT_URL`` (and the keys) at MinIO, SeaweedFS or AWS S3; unset it for AWS.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass

from warmstart.errors import StorageError
from warmstart.settings import bucket as default_bucket


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def child(self, name: str) -> S3Uri:
        base = self.key.rstrip("/")
        return S3Uri(self.bucket, f"{base}/{name}" if base else name)


def parse_s3_uri(uri: str) -> S3Uri:
    if not uri.startswith("s3://"):
        raise StorageError(f"{uri!r} is not an S3 URI: write it as s3://bucket/prefix")
    rest = uri[len("s3://") :]
    bucket_name, _, key = rest.partition("/")
    if not bucket_name:
        raise StorageError(f"{uri!r} has no bucket: write it as s3://bucket/prefix")
    return S3Uri(bucket_name, key)


def uri(*parts: str, bucket: str | None = None) -> S3Uri:
    """A URI in our bucket: ``uri("datasets", h, "manifest.json")``."""
    return S3Uri(bucket or default_bucket(), "/".join(p.strip("/") for p in parts if p))


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


@functools.lru_cache(maxsize=8)
def _client(endpoint: str | None, key_id: str | None, secret: str | None, region: str):
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        # boto3 >= 1.36 default checksums corrupt objects on non-AWS stores (CONVENTIONS.md).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=region,
        config=config,
    )


def client():
    """A boto3 S3 client from the standard variables (cached per configuration)."""
    return _client(
        _endpoint(),
        os.environ.get("AWS_ACCESS_KEY_ID"),
        os.environ.get("AWS_SECRET_ACCESS_KEY"),
        os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )


def explain(exc: BaseException, target: S3Uri | str) -> StorageError:
    """Turn a botocore exception into a one-line StorageError naming the input and the fix."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    where = str(target)
    if isinstance(exc, NoCredentialsError):
        return StorageError(
            f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or run `warmstart up` and `eval $(warmstart env)`)"
        )
    if isinstance(exc, EndpointConnectionError) or type(exc).__name__ in (
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
    ):
        return StorageError(
            f"S3 store unreachable at {_endpoint() or 'AWS'} for {where}: start it with "
            "`warmstart up` or check AWS_ENDPOINT_URL"
        )
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "403",
            "Forbidden",
        ):
            return StorageError(
                f"S3 refused the credentials for {where} ({code}): check AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY"
            )
        if code in ("NoSuchBucket",):
            return StorageError(
                f"bucket of {where} does not exist: create it or set WARMSTART_BUCKET"
            )
        if code in ("NoSuchKey", "404", "NotFound"):
            return StorageError(f"{where} does not exist in the S3 store")
        return StorageError(f"S3 error {code or type(exc).__name__} on {where}")
    return StorageError(f"S3 error on {where}: {type(exc).__name__}: {exc}")


def _wrap(target: S3Uri | str):
    from botocore.exceptions import BotoCoreError, ClientError

    class _Ctx:
        def __enter__(self):
            return self

        def __exit__(self, et, ev, tb):
            if ev is not None and isinstance(ev, BotoCoreError | ClientError):
                raise explain(ev, target) from None
            return False

    return _Ctx()


def put_bytes(
    target: S3Uri, data: bytes, *, content_type: str = "application/octet-stream"
) -> None:
    """One PUT: atomic per object (readers see the old object or the whole new one)."""
    with _wrap(target):
        client().put_object(
            Bucket=target.bucket, Key=target.key, Body=data, ContentType=content_type
        )


def put_file(target: S3Uri, path: str | os.PathLike) -> None:
    with _wrap(target):
        client().upload_file(str(path), target.bucket, target.key)


def get_bytes(target: S3Uri) -> bytes:
    with _wrap(target):
        return client().get_object(Bucket=target.bucket, Key=target.key)["Body"].read()


def download_file(target: S3Uri, path: str | os.PathLike) -> None:
    with _wrap(target):
        client().download_file(target.bucket, target.key, str(path))


def exists(target: S3Uri) -> bool:
    from botocore.exceptions import ClientError

    try:
        with _wrap(target):
            client().head_object(Bucket=target.bucket, Key=target.key)
        return True
    except StorageError as err:
        cause = err.__context__
        if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in (
            "404",
            "NoSuchKey",
            "NotFound",
        ):
            return False
        if "does not exist in the S3 store" in str(err):
            return False
        raise


def list_keys(prefix: S3Uri) -> Iterator[str]:
    """Keys under a prefix (full keys, paginated)."""
    with _wrap(prefix):
        paginator = client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=prefix.bucket, Prefix=prefix.key):
            for obj in page.get("Contents", []):
                yield obj["Key"]


def delete_prefix(prefix: S3Uri) -> int:
    keys = list(list_keys(prefix))
    with _wrap(prefix):
        for i in range(0, len(keys), 1000):
            client().delete_objects(
                Bucket=prefix.bucket,
                Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
            )
    return len(keys)


def ensure_bucket(name: str | None = None) -> None:
    from botocore.exceptions import ClientError

    name = name or default_bucket()
    c = client()
    try:
        c.head_bucket(Bucket=name)
        return
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise explain(exc, f"s3://{name}") from None
    except Exception as exc:  # connection errors
        raise explain(exc, f"s3://{name}") from None
    with _wrap(f"s3://{name}"):
        c.create_bucket(Bucket=name)
