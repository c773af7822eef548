"""No side door into SeaweedFS: with the real `weed mini` of the test stack, every port but S3's
refuses anonymous reads and writes, while S3 with the stack's keys keeps working.

- filer HTTP: off (-disableHttp): 404 for reads, writes, listings; nothing lands in the bucket;
- master HTTP: only its status page is left; /dir/assign, /submit, /col/delete are gone;
- volume HTTP: 401 without a token signed with the stack's JWT key (a signed one gets through);
- every gRPC port (+10000): TLS with a client certificate from the stack's CA, or no answer;
- weed listens on loopback only, on the ports the stack chose (its admin server included);
- what stays open, and is listed in the README's security section: the master's status page and
  /cluster/status, the volume server's /status (topology, disk paths) and the admin's /health.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import ssl
import time
import uuid
from pathlib import Path

import httpx
import pytest

from warmstart import storage
from warmstart.infra.config import GRPC_OFFSET
from warmstart.infra.credentials import stack_secrets

pytestmark = pytest.mark.services

# An HTTP/2 client preface and an empty SETTINGS frame: what a plaintext gRPC client sends first.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
H2_SETTINGS = 0x04


@pytest.fixture(scope="module")
def stored(stack) -> tuple[str, bytes]:
    """An object written through S3 with the stack's keys: (key, content)."""
    key = f"tests/side-door/{uuid.uuid4().hex}.txt"
    content = f"secret payload {uuid.uuid4().hex}".encode()
    storage.put_bytes(storage.uri(key), content)
    return key, content


def _url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


def test_filer_http_neither_reads_nor_writes(stack, stored):
    cfg, (key, content) = stack.config, stored
    port = cfg.filer_port
    bucket_path = f"/buckets/{cfg.bucket}"
    for path in (f"{bucket_path}/{key}", f"{bucket_path}/", "/buckets/", "/"):
        r = httpx.get(_url(port, path), timeout=10)
        assert r.status_code in (401, 403, 404), (path, r.status_code)
        assert content not in r.content
    side = f"tests/side-door/{uuid.uuid4().hex}.txt"
    writes = (
        httpx.post(_url(port, f"{bucket_path}/{side}"), files={"file": ("x.txt", b"evil")}),
        httpx.put(_url(port, f"{bucket_path}/{side}"), content=b"evil"),
        httpx.delete(_url(port, f"{bucket_path}/{key}")),
    )
    for r in writes:
        assert r.status_code in (401, 403, 404), (r.request.method, r.status_code)
    assert not storage.exists(storage.uri(side)), "a write through the filer reached the bucket"
    assert storage.get_bytes(storage.uri(key)) == content  # S3 with keys: untouched, readable
    # the filer's unix socket serves the same (nothing)
    transport = httpx.HTTPTransport(uds=str(cfg.run / "filer.sock"))
    with httpx.Client(transport=transport) as client:
        assert client.get(f"http://filer{bucket_path}/{key}").status_code in (401, 403, 404)


def test_master_http_has_no_data_api(stack, stored):
    cfg, (key, content) = stack.config, stored
    port = cfg.master_port
    for method, path in (
        ("GET", "/dir/assign"),
        ("POST", "/dir/assign"),
        ("GET", "/dir/lookup?volumeId=1"),
        ("GET", "/vol/status"),
        ("POST", "/vol/grow?count=1"),
        ("POST", f"/col/delete?collection={cfg.bucket}"),
    ):
        r = httpx.request(method, _url(port, path), timeout=10)
        assert r.status_code in (401, 403, 404), (method, path, r.status_code, r.text[:200])
    upload = httpx.post(_url(port, "/submit"), files={"file": ("x.txt", b"evil")}, timeout=10)
    assert upload.status_code in (401, 403, 404), upload.text[:200]
    assert storage.get_bytes(storage.uri(key)) == content


def _jwt(key: str, fid: str) -> str:
    """An HS256 token as SeaweedFS's master signs one for a file id."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"fid": fid, "exp": int(time.time()) + 60}).encode())
    signature = hmac.new(key.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(signature)}"


def test_volume_server_refuses_requests_without_a_signed_token(stack, stored):
    cfg, keys = stack.config, stack_secrets(stack.config)
    fid = "1,01637037d6"
    url = _url(cfg.volume_port, f"/{fid}")
    anonymous = (
        httpx.get(url, timeout=10),
        httpx.post(url, files={"file": ("x.txt", b"evil")}, timeout=10),
        httpx.delete(url, timeout=10),
    )
    for r in anonymous:
        assert r.status_code == 401, (r.request.method, r.status_code, r.text[:200])
    forged = {"Authorization": f"Bearer {_jwt('not-the-key', fid)}"}
    assert httpx.get(url, headers=forged, timeout=10).status_code == 401
    assert httpx.post(url, files={"file": ("x", b"e")}, headers=forged).status_code == 401
    # control: a token signed with the stack's key passes the check (the needle is not there)
    signed = {"Authorization": f"Bearer {_jwt(keys.jwt_volume_read, fid)}"}
    assert httpx.get(url, headers=signed, timeout=10).status_code != 401


def _h2_answer(sock: socket.socket) -> bytes:
    sock.sendall(H2_PREFACE)
    try:
        return sock.recv(64)
    except (ConnectionResetError, TimeoutError, ssl.SSLError):
        return b""


def _tls(cert: tuple[str, str] | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def _tls_answer(port: int, cert: tuple[str, str] | None) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with _tls(cert).wrap_socket(raw) as sock:
                return _h2_answer(sock)
    except (ssl.SSLError, ConnectionResetError, TimeoutError):
        return b""


@pytest.mark.parametrize("service", ["s3", "master", "volume", "filer", "admin"])
def test_grpc_port_needs_the_stacks_client_certificate(stack, service):
    cfg = stack.config
    port = getattr(cfg, f"{service}_port") + GRPC_OFFSET
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        plain = _h2_answer(sock)
    assert len(plain) < 9 or plain[3] != H2_SETTINGS, "plaintext gRPC got an HTTP/2 answer"
    assert _tls_answer(port, None) == b"", "TLS without a client certificate got an answer"
    tls = cfg.weed_config / "tls"
    ours = _tls_answer(port, (str(tls / "node.crt"), str(tls / "node.key")))
    assert len(ours) >= 9 and ours[3] == H2_SETTINGS, f"the stack's own certificate: {ours!r}"


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for table, size in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                addr, port = cols[1].split(":")
                raw = bytes.fromhex(addr)
                ip = ".".join(str(b) for b in raw[::-1]) if size == 4 else raw.hex()
                out.add((ip, int(port, 16)))
    return out


def test_weed_listens_on_loopback_only_on_the_ports_the_stack_chose(stack):
    cfg = stack.config
    pid = int((cfg.run / "seaweedfs.pid").read_text())
    listening = _listening(pid)
    chosen = set(cfg.weed_ports.values())
    assert cfg.admin_port in chosen  # the admin server's port is the stack's, not weed's 23646
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
    assert {port for _, port in listening} == chosen | {p + GRPC_OFFSET for p in chosen}


def test_the_information_pages_that_stay_open_are_the_documented_ones(stack):
    """No weed 4.48 flag closes these; the README lists them. Loopback only (test above)."""
    cfg = stack.config
    status = httpx.get(_url(cfg.master_port, "/cluster/status"), timeout=10)
    assert status.status_code == 200 and "Leader" in status.json()
    volume = httpx.get(_url(cfg.volume_port, "/status"), timeout=10)
    assert volume.status_code == 200 and "DiskStatuses" in volume.json()
    # the admin server, its UI off, answers its health check and nothing else
    assert httpx.get(_url(cfg.admin_port, "/health"), timeout=10).status_code == 200
    for path in ("/", "/admin", "/api/cluster/topology", "/login"):
        assert httpx.get(_url(cfg.admin_port, path), timeout=10).status_code == 404, path
