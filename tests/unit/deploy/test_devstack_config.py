"""Pure parts of the local stack: ports, templates, chroot checks, tokens."""

from __future__ import annotations

import os
from pathlib import Path

import jwt
import pytest
from orderflow_devstack.components import StackError, render_template
from orderflow_devstack.config import (
    DEFAULT_PORTS,
    EXPORT_WORKER_BASE_PORT,
    ROLE_PORTS,
    StackConfig,
    chroot_safe,
)
from orderflow_devstack.tokens import mint


def test_ports_are_the_dev_defaults_plus_the_offset(tmp_path: Path) -> None:
    cfg = StackConfig.from_env(state_dir=tmp_path, port_offset=10000)
    defaults = {
        **DEFAULT_PORTS,
        **ROLE_PORTS,
        **{f"export-worker-{n}": EXPORT_WORKER_BASE_PORT + n for n in (1, 2)},
    }
    assert cfg.ports == {name: port + 10000 for name, port in defaults.items()}
    assert len(set(cfg.ports.values())) == len(cfg.ports)  # no two processes share a port
    assert cfg.redis_url == "redis://127.0.0.1:16379/0"
    assert cfg.gateway_url == "http://localhost:18000"


def test_service_env_points_at_the_stack_and_at_its_own_roles(tmp_path: Path) -> None:
    cfg = StackConfig.from_env(state_dir=tmp_path / "state", port_offset=3)
    env = cfg.service_env("audit-service")
    assert env["HTTP_PORT"] == "8106"
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://audit_service:")
    assert env["MIGRATION_DATABASE_URL"].startswith("postgresql+psycopg://audit_owner:")
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9095"
    export = cfg.service_env("export-service")
    assert export["EXPORT_STORAGE_DIR"] == str(tmp_path / "state" / "storage")


def test_secrets_are_generated_once_per_state_dir(tmp_path: Path) -> None:
    first = StackConfig.from_env(state_dir=tmp_path).secrets()
    again = StackConfig.from_env(state_dir=tmp_path).secrets()
    other = StackConfig.from_env(state_dir=tmp_path / "other").secrets()
    assert first == again
    assert first["draft_api_password"] != other["draft_api_password"]
    assert os.stat(tmp_path / "secrets.json").st_mode & 0o077 == 0


def test_template_placeholders_are_filled_and_nginx_variables_kept() -> None:
    text = "listen ${GATEWAY_LISTEN}; proxy_set_header Host $http_host;"
    assert render_template(text, {"GATEWAY_LISTEN": "8000"}) == (
        "listen 8000; proxy_set_header Host $http_host;"
    )
    with pytest.raises(StackError, match="GATEWAY_LISTEN"):
        render_template(text, {})


def test_world_writable_parents_are_not_chroot_safe(tmp_path: Path) -> None:
    assert not chroot_safe(Path("/tmp") / "x" / "dropzone")
    assert chroot_safe(Path("/usr/share"))
    cfg = StackConfig.from_env(state_dir=Path("/tmp/somewhere/.run"))
    assert str(cfg.system_dir).startswith("/var/lib/orderflow/")


def test_tokens_carry_the_documented_claims() -> None:
    token = mint("s" * 32, roles=["approver"], org="acme", sub="u-9")
    claims = jwt.decode(
        token, "s" * 32, algorithms=["HS256"], audience="orderflow", issuer="orderflow"
    )
    assert (claims["sub"], claims["org_id"], claims["roles"]) == ("u-9", "acme", ["approver"])
    assert claims["exp"] > claims["iat"]


def test_every_role_is_a_process_with_its_own_port_and_export_workers_scale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPORT_WORKERS", "4")
    cfg = StackConfig.from_env(state_dir=tmp_path, port_offset=0)
    assert cfg.processes_of("export-service") == [
        "export-service",
        "export-service-relay",
        "export-service-consumer",
        *(f"export-worker-{n}" for n in range(1, 5)),
    ]
    assert cfg.processes_of("audit-service") == [
        "audit-service",
        "audit-service-ingest",
        "audit-service-retention",
    ]
    env = cfg.service_env("export-service", "export-worker-3")
    assert env["HTTP_PORT"] == str(EXPORT_WORKER_BASE_PORT + 3)
    described = cfg.describe()["processes"]
    assert described["export-worker-4"]["role"] == "worker"
    assert described["draft-api"]["role"] == "serve"
    monkeypatch.setenv("EXPORT_WORKERS", "0")
    with pytest.raises(ValueError, match="EXPORT_WORKERS"):
        StackConfig.from_env(state_dir=tmp_path)


def test_each_stack_signs_its_tokens_with_a_key_of_its_own(tmp_path: Path) -> None:
    one = StackConfig.from_env(state_dir=tmp_path / "a").secrets()["jwt_secret"]
    two = StackConfig.from_env(state_dir=tmp_path / "b").secrets()["jwt_secret"]
    assert one != two and len(one) >= 32
    assert StackConfig.from_env(state_dir=tmp_path / "a").secrets()["jwt_secret"] == one


def test_a_new_state_dir_drops_the_system_dir_a_deleted_one_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postgres data under /var/lib/orderflow/<hash> of a state dir removed by hand holds
    passwords the new secrets do not know: it must not be reused."""
    import orderflow_devstack.config as config

    monkeypatch.setattr(config, "SYSTEM_BASE", tmp_path / "system")
    cfg = StackConfig.from_env(state_dir=tmp_path / "state")
    assert cfg.system_dir != cfg.state_dir  # /tmp is not a safe parent
    (cfg.system_dir / "postgres").mkdir(parents=True)
    cfg.secrets()
    assert not cfg.system_dir.exists()
    (cfg.system_dir / "postgres").mkdir(parents=True)
    cfg.secrets()  # the stack's own system dir stays once it has secrets
    assert (cfg.system_dir / "postgres").is_dir()
