"""How `up` and `status` judge a service, against small fake servers: healthy means it refuses
anonymous requests and accepts the stack's credentials; an open one (an older warmstart's) is
restarted, one that refuses our credentials fails fast with the fix."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from warmstart.infra import services
from warmstart.infra.config import StackConfig
from warmstart.infra.credentials import mlflow_auth, prefect_auth

# path, Authorization header (or None) -> status
Rule = Callable[[str, str | None], int]


@contextmanager
def fake(rule: Rule) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(rule(self.path, self.headers.get("Authorization")))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _basic(pair: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(pair).encode()).decode()


def _svc(cfg: StackConfig, name: str) -> services.Service:
    return next(s for s in services.services(cfg) if s.name == name)


def _secured(expected: str, *, anonymous: int = 401, ours: int = 200) -> Rule:
    def rule(path: str, auth: str | None) -> int:
        if path.endswith("/health"):
            return 200
        if auth is None:
            return anonymous
        return ours if auth == expected else 401

    return rule


@pytest.mark.parametrize(
    ("anonymous", "ours", "state"),
    [
        (401, 200, services.OK),
        (200, 200, services.OPEN),  # an older warmstart's server without auth
        (401, 401, services.REFUSED),  # e.g. a user store made with another password
    ],
)
@pytest.mark.parametrize("name", ["mlflow", "prefect"])
def test_mlflow_and_prefect_are_judged_by_what_they_refuse(tmp_path, name, anonymous, ours, state):
    home = StackConfig(home=tmp_path / "home")
    auth = mlflow_auth(home) if name == "mlflow" else prefect_auth(home)
    expected = _basic(auth) if ours == 200 else "never"
    with fake(_secured(expected, anonymous=anonymous, ours=200)) as port:
        cfg = StackConfig(home=home.home, mlflow_port=port, prefect_port=port)
        assert services.probe(_svc(cfg, name), cfg) == state
        assert services.healthy(_svc(cfg, name), cfg) is (state == services.OK)


def test_a_server_without_health_is_down(tmp_path):
    with fake(lambda path, auth: 503) as port:
        cfg = StackConfig(home=tmp_path / "home", mlflow_port=port, prefect_port=port)
        assert services.probe(_svc(cfg, "mlflow"), cfg) == services.DOWN
        assert services.probe(_svc(cfg, "prefect"), cfg) == services.DOWN


@pytest.mark.parametrize(
    ("bucket", "master", "state"),
    [
        (403, 404, services.OK),
        (403, 200, services.OPEN),  # an older weed: the master's HTTP API still answers
        (200, 404, services.OPEN),  # S3 without keys
        (503, 404, services.DOWN),
    ],
)
def test_seaweedfs_is_judged_by_s3_and_the_master(tmp_path, bucket, master, state):
    with fake(lambda path, auth: bucket) as s3_port, fake(lambda path, auth: master) as m_port:
        cfg = StackConfig(home=tmp_path / "home", s3_port=s3_port, master_port=m_port)
        assert services.probe(_svc(cfg, "s3"), cfg) == state


def test_nothing_listening_is_down(tmp_path):
    with fake(lambda path, auth: 200) as port:
        pass  # closed again: nothing listens there now
    cfg = StackConfig(home=tmp_path / "home", s3_port=port, mlflow_port=port, prefect_port=port)
    assert {services.probe(s, cfg, timeout=1) for s in services.services(cfg)} == {services.DOWN}
