"""The one storage module: an S3 client configured from the standard environment, and the few
operations everything else needs. Other modules ask it for URIs and bytes, never build clients.

Every call rides out a store restart: transient failures (connection refused or reset, timeouts,
5xx, throttling) are retried with jittered exponential backoff for ``WARMSTART_IO_RETRY_SECONDS``
(default 60 s) counted from the start of the outage, one budget shared by every call
(``warmstart.outage``), then fail with one StorageError naming the endpoint and the fix. Errors that
cannot heal (refused credentials, a missing bucket or object) fail at once.

Uploads carry the content's sha256 as object metadata (``x-amz-meta-sha256``), so a local copy
can be checked against the object even when its ETag is not an MD5 (multipart uploads).

Production: point ``AWS_ENDPOINT_URL`` (and the keys) at MinIO, SeaweedFS or AWS S3; unset it for AWS.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from warmstart import outage
from warmstart.errors import StorageError
from warmstart.settings import bucket as default_bucket

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_ENV = "WARMSTART_IO_RETRY_SECONDS"
RETRY_SECONDS = 60.0  # default retry window: longer than a store restart
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 8.0  # seconds; each wait is drawn from [d/2, d]
POOL_CONNECTIONS = 16  # HTTP connections per client = the most threads that share it
SHA256_META = "sha256"  # user metadata key holding the uploaded content's sha256
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_MD5 = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def child(self, name: str) -> S3Uri:
        base = self.key.rstrip("/")
        return S3Uri(self.bucket, f"{base}/{name}" if base else name)


@dataclass(frozen=True)
class ObjectInfo:
    """What the store says about one object: size, ETag (unquoted) and, from ``head`` only,
    the sha256 recorded at upload (None when listed, or uploaded by another tool)."""

    key: str
    size: int
    etag: str
    sha256: str | None = None

    @property
    def md5(self) -> str | None:
        """The content's MD5 when the ETag is one (single-part upload), else None."""
        return self.etag if _MD5.match(self.etag) else None


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


def endpoint() -> str | None:
    """The S3 endpoint URL from the environment; None means AWS S3."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


@functools.lru_cache(maxsize=8)
def _client(endpoint_url: str | None, key_id: str | None, secret: str | None, region: str):
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        # boto3 >= 1.36 default checksums corrupt objects on non-AWS stores.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # botocore absorbs a blip; outages are ridden out by the window in ``_call``.
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=POOL_CONNECTIONS,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=region,
        config=config,
    )


def client():
    """A boto3 S3 client from the standard variables (cached per configuration)."""
    return _client(
        endpoint(),
        os.environ.get("AWS_ACCESS_KEY_ID"),
        os.environ.get("AWS_SECRET_ACCESS_KEY"),
        os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )


def reset_clients() -> None:
    """Forget cached clients: a forked worker process must open its own connections."""
    _client.cache_clear()


# ---------------------------------------------------------------- errors and retries


def retry_window() -> float:
    """Seconds an S3 call keeps retrying transient failures (``WARMSTART_IO_RETRY_SECONDS``)."""
    raw = os.environ.get(RETRY_ENV, "").strip()
    if not raw:
        return RETRY_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise StorageError(f"{RETRY_ENV}={raw!r} is not a number of seconds: set it to e.g. 60")
    return value


def _unwrap(exc: BaseException) -> BaseException:
    """The botocore error inside boto3's transfer wrappers (S3UploadFailedError, retries)."""
    from boto3.exceptions import S3UploadFailedError
    from s3transfer.exceptions import RetriesExceededError

    if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
        return exc.__context__
    if isinstance(exc, RetriesExceededError) and exc.last_exception is not None:
        return exc.last_exception
    return exc


def _error_code(exc: BaseException) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code", "")
    return code, int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _cause_code(err: StorageError) -> str:
    """The S3 error code behind a StorageError raised by ``_call`` ("" when none)."""
    return _error_code(_unwrap(err.__context__))[0] if err.__context__ is not None else ""


def _is_s3_error(exc: BaseException) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, BotoCoreError | ClientError)


def is_transient(exc: BaseException) -> bool:
    """True for failures that heal by waiting: no connection, timeouts, 5xx, throttling."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, SSLError

    exc = _unwrap(exc)
    if isinstance(exc, SSLError):
        return False  # a certificate problem does not heal by waiting
    if isinstance(exc, ConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        code, status = _error_code(exc)
        return status >= 500 or status == 429 or code in _TRANSIENT_CODES
    return False


def _missing_bucket(bucket_name: str, where: str) -> StorageError:
    at = endpoint() or "AWS S3"
    if bucket_name == default_bucket():
        fix = "create it with `warmstart up`, or set WARMSTART_BUCKET to an existing bucket"
    else:
        fix = (
            "correct the bucket in that s3:// address (the source spec or URI you gave), or point "
            "AWS_ENDPOINT_URL and the credentials at the store that holds it"
        )
    return StorageError(f"bucket {bucket_name!r} of {where} does not exist at {at}: {fix}")


def explain(
    exc: BaseException, target: S3Uri | str, *, waited: float | None = None
) -> StorageError:
    """Turn a botocore exception into a one-line StorageError naming the input and the fix."""
    from botocore.exceptions import ClientError, NoCredentialsError

    exc, where = _unwrap(exc), str(target)
    at = endpoint() or "AWS S3"
    after = f" (retried for {waited:.0f} s of the {retry_window():.0f} s budget)" if waited else ""
    if isinstance(exc, NoCredentialsError):
        return StorageError(
            f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or run `warmstart up` and `eval $(warmstart env)`)"
        )
    code, status = _error_code(exc)
    if isinstance(exc, ClientError) and (code in _CREDENTIAL_CODES or status == 403):
        return StorageError(
            f"S3 at {at} refused the credentials for {where} ({code or status}): check "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if code == "NoSuchBucket":
        name = target.bucket if isinstance(target, S3Uri) else parse_s3_uri(where).bucket
        return _missing_bucket(name, where)
    if isinstance(exc, ClientError) and code in _MISSING_CODES:
        return StorageError(f"{where} does not exist in the S3 store at {at}")
    if is_transient(exc):
        what = f"kept failing ({code or status})" if isinstance(exc, ClientError) else "unreachable"
        return StorageError(
            f"S3 store at {at} {what} for {where}{after}: start it with `warmstart up`, check "
            f"AWS_ENDPOINT_URL, or raise {RETRY_ENV} for longer outages"
        )
    if isinstance(exc, ClientError):
        return StorageError(f"S3 error {code or status} at {at} on {where}")
    return StorageError(f"S3 error at {at} on {where}: {type(exc).__name__}: {exc}")


def _call(target: S3Uri | str, fn: Callable[[], T]) -> T:
    """Run one S3 operation, retrying transient failures with jittered exponential backoff
    until the retry window, counted from the start of the store's outage (``outage.S3``: one
    budget for every call in the outage, not one per call), has passed; botocore errors become
    a one-line StorageError."""
    window, start, delay = retry_window(), time.monotonic(), BACKOFF_FIRST
    while True:
        try:
            result = fn()
        except Exception as exc:
            if not _is_s3_error(_unwrap(exc)):
                raise
            if not is_transient(exc):
                raise explain(exc, target) from None
            elapsed = time.monotonic() - outage.S3.failed(start, window)
            if elapsed >= window:
                raise explain(exc, target, waited=elapsed) from None
            pause = min(random.uniform(delay / 2, delay), window - elapsed)
            log.warning(
                "S3 at %s: %s on %s; retrying in %.1f s (%.0f of %.0f s)",
                endpoint() or "AWS S3",
                type(_unwrap(exc)).__name__,
                target,
                pause,
                elapsed,
                window,
            )
            time.sleep(max(pause, 0.0))
            delay = min(delay * 2, BACKOFF_MAX)
        else:
            outage.S3.ended()
            return result


# ---------------------------------------------------------------- operations


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's content, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def put_bytes(
    target: S3Uri, data: bytes, *, content_type: str = "application/octet-stream"
) -> None:
    """One PUT: atomic per object (readers see the old object or the whole new one)."""
    meta = {SHA256_META: hashlib.sha256(data).hexdigest()}
    _call(
        target,
        lambda: client().put_object(
            Bucket=target.bucket, Key=target.key, Body=data, ContentType=content_type, Metadata=meta
        ),
    )


def put_file(target: S3Uri, path: str | os.PathLike) -> None:
    """Upload a file (multipart when large), recording its sha256 in the object's metadata."""
    extra = {"Metadata": {SHA256_META: file_digest(path)}}
    _call(
        target,
        lambda: client().upload_file(str(path), target.bucket, target.key, ExtraArgs=extra),
    )


def get_bytes(target: S3Uri) -> bytes:
    return _call(
        target,
        lambda: client().get_object(Bucket=target.bucket, Key=target.key)["Body"].read(),
    )


def download_file(target: S3Uri, path: str | os.PathLike) -> None:
    _call(target, lambda: client().download_file(target.bucket, target.key, str(path)))


def head(target: S3Uri) -> ObjectInfo | None:
    """Size, ETag and recorded sha256 of one object; None when it (or its bucket) is missing."""
    try:
        got = _call(target, lambda: client().head_object(Bucket=target.bucket, Key=target.key))
    except StorageError as err:
        if _cause_code(err) in _MISSING_CODES:
            return None
        raise
    return ObjectInfo(
        key=target.key,
        size=int(got["ContentLength"]),
        etag=got.get("ETag", "").strip('"'),
        sha256=(got.get("Metadata") or {}).get(SHA256_META),
    )


def exists(target: S3Uri) -> bool:
    return head(target) is not None


def list_objects(prefix: S3Uri) -> list[ObjectInfo]:
    """Every object under a prefix (full keys, all pages), with size and ETag."""

    def listing() -> list[ObjectInfo]:
        paginator = client().get_paginator("list_objects_v2")
        return [
            ObjectInfo(obj["Key"], int(obj["Size"]), obj.get("ETag", "").strip('"'))
            for page in paginator.paginate(Bucket=prefix.bucket, Prefix=prefix.key)
            for obj in page.get("Contents", [])
        ]

    return _call(prefix, listing)


def list_keys(prefix: S3Uri) -> Iterator[str]:
    """Keys under a prefix (full keys, paginated)."""
    return iter([obj.key for obj in list_objects(prefix)])


def delete_prefix(prefix: S3Uri) -> int:
    keys = list(list_keys(prefix))
    for i in range(0, len(keys), 1000):
        batch = {"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True}
        _call(prefix, lambda b=batch: client().delete_objects(Bucket=prefix.bucket, Delete=b))
    return len(keys)


def ensure_bucket(name: str | None = None) -> None:
    """Create the bucket unless it exists (retrying while the store is restarting)."""
    from botocore.exceptions import ClientError

    name = name or default_bucket()
    where = f"s3://{name}"
    try:
        _call(where, lambda: client().head_bucket(Bucket=name))
        return
    except StorageError as err:
        if _cause_code(err) not in _MISSING_CODES:
            raise

    def create() -> None:
        try:
            client().create_bucket(Bucket=name)
        except ClientError as exc:  # a retried create that had already succeeded
            if _error_code(exc)[0] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    _call(where, create)
