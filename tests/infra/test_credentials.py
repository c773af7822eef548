"""The stack's credentials and configuration files, without starting anything: generated once and
kept, private, consistent between servers and clients, redacted, never sent to another server."""

from __future__ import annotations

import base64
import json
import os
import stat
import tomllib
from pathlib import Path

import pytest

from warmstart import settings
from warmstart.infra import credentials, seaweedfs, servers, services
from warmstart.infra.config import StackConfig
from warmstart.infra.errors import StackError, WarmstartError
from warmstart.infra.files import make_private


@pytest.fixture
def cfg(tmp_path) -> StackConfig:
    return StackConfig(home=tmp_path / "home")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_errors_are_one_class_for_the_cli_and_infra():
    from warmstart import errors

    assert errors.StackError is StackError  # needs warmstart/errors.py to re-export it
    assert issubclass(StackError, errors.WarmstartError)
    assert errors.WarmstartError is WarmstartError


def test_credentials_are_generated_once_and_private(cfg):
    env = credentials.client_env(cfg)
    assert credentials.client_env(cfg) == env  # stable across calls
    for name in ("s3.json", "secrets.json"):
        assert _mode(cfg.home / name) == 0o600
    assert _mode(cfg.home) == 0o700
    keys = credentials.stack_secrets(cfg)
    assert env["PREFECT_API_AUTH_STRING"] == f"warmstart:{keys.prefect_password}"
    assert env["MLFLOW_TRACKING_PASSWORD"] == keys.mlflow_password
    values = [getattr(keys, f) for f in keys.__dataclass_fields__]
    assert len(set(values)) == len(values) and all(len(v) >= 32 for v in values)
    assert all(":" not in v for v in values)  # Prefect splits "user:password" at the first colon


def test_a_missing_secret_is_added_and_the_others_kept(cfg):
    first = credentials.stack_secrets(cfg)
    path = cfg.home / "secrets.json"
    stored = json.loads(path.read_text())
    del stored["prefect_password"]
    path.write_text(json.dumps(stored))
    again = credentials.stack_secrets(cfg)
    assert again.mlflow_password == first.mlflow_password
    assert again.prefect_password and again.prefect_password != first.prefect_password
    assert json.loads(path.read_text())["prefect_password"] == again.prefect_password


def test_a_corrupt_secrets_file_is_a_one_line_error(cfg):
    cfg.home.mkdir(parents=True)
    (cfg.home / "secrets.json").write_text("{not json")
    with pytest.raises(StackError, match="secrets.json is not valid JSON"):
        credentials.stack_secrets(cfg)


def test_env_file_is_private_and_loads_back(cfg):
    path = credentials.write_env_file(cfg)
    assert _mode(path) == 0o600
    assert settings.read_env_file(path) == credentials.client_env(cfg)


def test_weed_security_toml_signs_every_port_and_needs_client_certificates(cfg):
    cmd, env = seaweedfs.weed_command(cfg)
    assert "-disableHttp" in cmd
    assert f"-config_dir={cfg.weed_config}" in cmd[: cmd.index("mini")]  # a global flag
    assert not [k for k in env if k.startswith("WEED_")]
    path = cfg.weed_config / "security.toml"
    assert _mode(path) == 0o600
    toml = tomllib.loads(path.read_text())
    keys = credentials.stack_secrets(cfg)
    assert toml["jwt"]["signing"]["key"] == keys.jwt_volume_write
    assert toml["jwt"]["signing"]["read"]["key"] == keys.jwt_volume_read
    assert toml["jwt"]["filer_signing"]["key"] == keys.jwt_filer_write
    assert toml["jwt"]["filer_signing"]["read"]["key"] == keys.jwt_filer_read
    assert Path(toml["grpc"]["ca"]).is_file()
    for component in ("master", "volume", "filer", "s3", "admin", "client"):
        section = toml["grpc"][component]
        assert Path(section["cert"]).is_file() and Path(section["key"]).is_file(), component
    tls = cfg.weed_config / "tls"
    assert sorted(p.name for p in tls.iterdir()) == ["ca.crt", "node.crt", "node.key"]
    assert all(_mode(p) == 0o600 for p in tls.iterdir())


def test_certificates_are_made_once(cfg):
    first = seaweedfs.tls_files(cfg)
    before = {k: p.read_bytes() for k, p in first.items()}
    assert {k: p.read_bytes() for k, p in seaweedfs.tls_files(cfg).items()} == before


def test_missing_openssl_is_a_one_line_error(cfg, monkeypatch):
    monkeypatch.setattr(seaweedfs.shutil, "which", lambda name: None)
    with pytest.raises(StackError, match="openssl"):
        seaweedfs.tls_files(cfg)


def test_mlflow_reads_the_generated_auth_config(cfg, monkeypatch):
    from mlflow.server.auth.config import read_auth_config

    cmd, env = servers.mlflow_command(cfg)
    assert cmd[cmd.index("--app-name") + 1] == "basic-auth"
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == credentials.stack_secrets(cfg).mlflow_flask_key
    for var in ("AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION"):
        assert env[var] == "when_required"  # the artifact proxy writes to SeaweedFS
    ini = Path(env["MLFLOW_AUTH_CONFIG_PATH"])
    assert _mode(ini) == 0o600
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_USERNAME", raising=False)
    auth = read_auth_config()
    client = credentials.client_env(cfg)
    assert auth.admin_username == client["MLFLOW_TRACKING_USERNAME"]
    assert auth.admin_password == client["MLFLOW_TRACKING_PASSWORD"]
    assert auth.default_permission == "NO_PERMISSIONS"
    assert auth.database_uri == f"sqlite:///{cfg.data / 'mlflow-auth.db'}"


def test_prefect_server_checks_the_clients_auth_string(cfg, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "someone-elses")
    _, env = servers.prefect_command(cfg)
    client = credentials.client_env(cfg)
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == client["PREFECT_API_AUTH_STRING"]
    assert "PREFECT_API_URL" not in env and "MLFLOW_TRACKING_PASSWORD" not in env


def test_make_private_fixes_modes_and_leaves_links_alone(tmp_path):
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "a.log").write_text("x")
    outside = tmp_path / "outside.txt"
    outside.write_text("y")
    os.chmod(outside, 0o644)
    (home / "link").symlink_to(outside)
    for path, mode in ((home, 0o755), (home / "logs", 0o777), (home / "logs" / "a.log", 0o666)):
        os.chmod(path, mode)
    assert make_private(home) == 3
    assert (_mode(home), _mode(home / "logs"), _mode(home / "logs" / "a.log")) == (
        0o700,
        0o700,
        0o600,
    )
    assert _mode(outside) == 0o644
    assert make_private(home) == 0


# ------------------------------------------------------------------ settings (the client side)


def test_every_credential_variable_is_redacted(monkeypatch):
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "warmstart:prefect-pass-0123456789")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "warmstart")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "mlflow-pass-0123456789")
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", "flask-key-0123456789")
    basic = base64.b64encode(b"warmstart:mlflow-pass-0123456789").decode()
    prefect_basic = base64.b64encode(b"warmstart:prefect-pass-0123456789").decode()
    text = (
        "auth warmstart:prefect-pass-0123456789 | pw prefect-pass-0123456789 | "
        f"Authorization: Basic {basic} | {prefect_basic} | mlflow-pass-0123456789 | "
        "flask-key-0123456789 | experiment warmstart/uci-digits"
    )
    out = settings.redact(text)
    for secret in ("prefect-pass", "mlflow-pass", basic, prefect_basic, "flask-key"):
        assert secret not in out, secret
    assert "experiment warmstart/uci-digits" in out  # user names are not secrets
    assert "PREFECT_API_AUTH_STRING" in settings.SECRET_VARIABLES


def _env_file(tmp_path: Path) -> Path:
    path = tmp_path / "env"
    path.write_text(
        "export PREFECT_API_URL=http://127.0.0.1:4200/api\n"
        "export PREFECT_API_AUTH_STRING=warmstart:local-secret\n"
        "export MLFLOW_TRACKING_URI=http://127.0.0.1:5000\n"
        "export MLFLOW_TRACKING_USERNAME=warmstart\n"
        "export MLFLOW_TRACKING_PASSWORD=local-mlflow-secret\n"
        "export AWS_ENDPOINT_URL=http://127.0.0.1:8333\n"
        "export AWS_ACCESS_KEY_ID=WSLOCAL\n"
        "export AWS_SECRET_ACCESS_KEY=local-s3-secret\n"
    )
    return path


def test_load_env_never_sends_local_credentials_to_another_server(tmp_path, monkeypatch):
    for var in settings.CREDENTIALS_OF:
        monkeypatch.delenv(var, raising=False)
        for key in settings.CREDENTIALS_OF[var]:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "https://prefect.example.com/api")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")  # the same as the file
    settings.load_env(_env_file(tmp_path))
    assert "PREFECT_API_AUTH_STRING" not in os.environ
    assert os.environ["PREFECT_API_URL"] == "https://prefect.example.com/api"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "local-mlflow-secret"
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "local-s3-secret"  # endpoint from the file too


def test_gpu_slots_follow_the_visible_devices(monkeypatch):
    monkeypatch.setattr(services, "_nvidia_gpus", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert services.gpu_slots() == 4
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert services.gpu_slots() == 2
    monkeypatch.setenv("WARMSTART_SLOTS_PER_GPU", "3")  # small stages sharing each GPU
    assert services.slot_plan() == ("gpu", 6, 0)
    monkeypatch.delenv("WARMSTART_SLOTS_PER_GPU")
    monkeypatch.setattr(services, "cores", lambda: 8)
    monkeypatch.delenv("WARMSTART_CPU_SLOTS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert services.slot_plan() == ("cpu", 8, 1)  # CPU only: a slot per core, one thread each
    monkeypatch.setattr(services, "_nvidia_gpus", lambda: 0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert services.gpu_slots() == 8
    monkeypatch.setenv("WARMSTART_CPU_SLOTS", "2")
    assert services.slot_plan() == ("cpu", 2, 4)


def test_the_stack_and_the_stages_split_the_cpu_alike(monkeypatch):
    """`warmstart up` sizes the `gpu` limit (infra, no torch) by the same rule that gives each
    stage its threads (models.device): slots x threads never exceeds the cores."""
    from warmstart.models import device

    monkeypatch.setattr(services, "_nvidia_gpus", lambda: 0)
    assert services.CPU_THREADS_PER_STAGE == device.CPU_THREADS_PER_STAGE
    for cores in (1, 2, 3, 8):
        for explicit in ("", "1", "2", "5"):
            monkeypatch.setenv("WARMSTART_CPU_SLOTS", explicit)
            monkeypatch.setattr(services, "cores", lambda n=cores: n)
            _, slots, threads = services.slot_plan()
            assert (slots, threads) == (device.cpu_slots(cores), device.stage_threads(cores))
            assert slots * threads <= max(cores, slots)


def test_status_prints_the_slot_split(monkeypatch):
    from warmstart.cli.stack_cmds import slots_line

    monkeypatch.setattr(services, "_nvidia_gpus", lambda: 0)
    monkeypatch.setattr(services, "cores", lambda: 2)
    monkeypatch.delenv("WARMSTART_CPU_SLOTS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert slots_line() == (
        "training slots: 2 (the `gpu` tag limit) on 2 CPU cores, 2 stage(s) at once x 1 "
        "thread(s) each (WARMSTART_CPU_SLOTS overrides)"
    )
    monkeypatch.setattr(services, "_nvidia_gpus", lambda: 2)
    monkeypatch.setenv("WARMSTART_SLOTS_PER_GPU", "2")
    assert slots_line() == (
        "training slots: 4 (the `gpu` tag limit): 2 GPU(s) x 2 stage(s) each "
        "(WARMSTART_SLOTS_PER_GPU)"
    )
