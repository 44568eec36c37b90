"""The infra fixture gives each service a confined role, a working dropzone, topics."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from orderflow_devstack.pytest_plugin import StackHandle
from orderflow_shared.contracts.topics import ALL_TOPICS


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_each_role_can_create_tables_in_its_own_schema_only(infra: StackHandle) -> None:
    owner_url = libpq(infra.migration_database_urls["export-service"])
    with psycopg.connect(owner_url, autocommit=True) as export_owner:
        export_owner.execute("CREATE TABLE devstack_probe (id int)")
        try:
            schema = export_owner.execute(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_name = 'devstack_probe'"
            ).fetchone()
            assert schema == ("export",)
            with psycopg.connect(libpq(infra.database_urls["draft-api"]), autocommit=True) as dr:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    dr.execute("SELECT * FROM export.devstack_probe")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    dr.execute("CREATE TABLE export.intruder (id int)")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    dr.execute("CREATE TABLE public.intruder (id int)")
        finally:
            # leave the schema as migrations expect it
            export_owner.execute("DROP TABLE devstack_probe")


def test_audit_runtime_role_cannot_create_tables(infra: StackHandle) -> None:
    with psycopg.connect(libpq(infra.database_urls["audit-service"]), autocommit=True) as audit:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            audit.execute("CREATE TABLE audit.sneaky (id int)")


def test_unqualified_quickstart_sql_resolves_through_the_database_search_path(
    infra: StackHandle,
) -> None:
    rows = infra.psql("SHOW search_path")
    assert rows == [("draft, export, audit, public",)]


def test_every_contract_topic_exists(infra: StackHandle) -> None:
    async def topics() -> set[str]:
        admin = AIOKafkaAdminClient(**infra.kafka_options("admin"))
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    assert {str(t) for t in ALL_TOPICS} <= asyncio.run(topics())


def _ssh_options(infra: StackHandle, tmp_path: Path) -> list[str]:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(infra.sftp_known_hosts_line + "\n")
    return [
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-P",
        str(infra.sftp_port),
    ]


def test_sftp_accepts_the_client_key_and_files_land_in_the_inbox(
    infra: StackHandle, tmp_path: Path
) -> None:
    local = tmp_path / "order.csv"
    local.write_text("sku,quantity\nSKU-1,3\n")
    result = subprocess.run(
        [
            "sftp",
            "-b",
            "-",
            "-i",
            str(infra.sftp_private_key_path),
            *_ssh_options(infra, tmp_path),
            f"{infra.sftp_username}@{infra.sftp_host}",
        ],
        input=(
            f"put {local} /inbox/order.csv.tmp\n"
            "rename /inbox/order.csv.tmp /inbox/order.csv\n"
            "ls /\n"
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (infra.inbox_dir / "order.csv").read_text() == "sku,quantity\nSKU-1,3\n"
    # chrooted: the root the client sees is the dropzone, holding only inbox/
    assert "/inbox" in result.stdout and "/etc" not in result.stdout


def test_sftp_refuses_password_and_unknown_keys(infra: StackHandle, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "ssh",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "PubkeyAuthentication=no",
            *[o if o != "-P" else "-p" for o in _ssh_options(infra, tmp_path)],
            f"{infra.sftp_username}@{infra.sftp_host}",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "Permission denied (publickey)" in result.stderr


def test_a_killed_component_restarts(infra: StackHandle) -> None:
    infra.kill("redis")
    assert not infra.is_running("redis")
    assert not infra.is_ready("redis")
    infra.restart("redis")
    assert infra.is_ready("redis")


def test_what_a_test_leaves_stopped_is_started_again_after_it(
    infra: StackHandle, _devstack_session: Any
) -> None:
    infra.stop("sftp")
    assert not infra.is_running("sftp")
    _devstack_session.heal("this test")
    assert infra.is_ready("sftp")
