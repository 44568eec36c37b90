"""Pure parts of the local stack: ports, templates, chroot checks, tokens."""

from __future__ import annotations

import os
from pathlib import Path

import jwt
import pytest
from orderflow_devstack.components import StackError, render_template
from orderflow_devstack.config import DEFAULT_PORTS, StackConfig, chroot_safe
from orderflow_devstack.tokens import mint


def test_ports_are_the_dev_defaults_plus_the_offset(tmp_path: Path) -> None:
    cfg = StackConfig.from_env(state_dir=tmp_path, port_offset=10000)
    assert cfg.ports == {name: port + 10000 for name, port in DEFAULT_PORTS.items()}
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
