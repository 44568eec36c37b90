"""The asyncssh transport against a real OpenSSH dropzone."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from datetime import date

import asyncssh
import pytest
from export_service.adapters.sftp import SftpDropzoneTransport, SftpPool
from export_service.domain.errors import DeliveryError, ErrorCode
from export_service.domain.filenames import render_file_name
from export_service.service_layer.ports import Upload
from prometheus_client import REGISTRY


def upload(name: str, content: bytes, *, check_existing: bool = False) -> Upload:
    return Upload(name, content, hashlib.sha256(content).hexdigest(), check_existing)


@pytest.fixture
async def transport():
    pool = SftpPool(connect_timeout=5, allow_private_targets=True)  # sshd is on loopback
    yield SftpDropzoneTransport(pool, connect_timeout=5)
    await pool.close()


async def test_a_file_appears_once_with_its_content_and_no_temp_file(dropzone, box, transport):
    connection = dropzone.connection(box.remote)
    remote = await transport.deliver(connection, upload("order-1.csv", b"a,b\r\n1,2\r\n"))
    assert remote == f"{box.remote}/order-1.csv"
    assert box.files() == ["order-1.csv"]
    assert (box.path / "order-1.csv").read_bytes() == b"a,b\r\n1,2\r\n"


async def test_a_repeated_attempt_finds_the_delivered_file_and_does_not_rewrite_it(
    dropzone, box, transport
):
    connection = dropzone.connection(box.remote)
    await transport.deliver(connection, upload("order-2.csv", b"x" * 100))
    first = (box.path / "order-2.csv").stat().st_ino
    # a leftover temp file of a killed attempt is replaced, not left behind
    leftover = box.path / ".order-3.csv.part"
    leftover.write_bytes(b"half")
    owner = box.path.stat()
    os.chown(leftover, owner.st_uid, owner.st_gid)
    await transport.deliver(connection, upload("order-2.csv", b"x" * 100, check_existing=True))
    await transport.deliver(connection, upload("order-3.csv", b"y" * 10, check_existing=True))
    assert (box.path / "order-2.csv").stat().st_ino == first
    assert box.files() == ["order-2.csv", "order-3.csv"]
    assert (box.path / "order-3.csv").read_bytes() == b"y" * 10


async def test_many_uploads_share_few_connections_and_are_pipelined(dropzone, box, transport):
    connection = dropzone.connection(box.remote)
    count = 400
    content = b"z" * 4096
    opened = 0
    original = asyncssh.create_connection

    async def counting(*args, **kwargs):
        nonlocal opened
        opened += 1
        return await original(*args, **kwargs)

    asyncssh.create_connection = counting
    try:
        begin, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(
            *(
                transport.deliver(connection, upload(f"bulk-{i:04}.csv", content))
                for i in range(count)
            )
        )
        elapsed = time.perf_counter() - begin
        cpu = time.process_time() - cpu
    finally:
        asyncssh.create_connection = original
    assert len(box.files()) == count
    assert opened <= 2
    print(
        f"\nSFTP: {count} files of 4 KB in {elapsed:.2f}s = {count / elapsed:.0f} files/s, "
        f"{1000 * cpu / count:.2f} ms CPU per file"
    )


async def test_a_wrong_pinned_host_key_is_refused(dropzone, box, transport):
    connection = dropzone.connection(box.remote, host_key_fingerprint="SHA256:" + "A" * 43)
    with pytest.raises(DeliveryError) as raised:
        await transport.deliver(connection, upload("never.csv", b"x"))
    assert raised.value.code is ErrorCode.HOST_KEY_MISMATCH and not raised.value.is_transient
    assert box.files() == []


async def test_wrong_credentials_fail_permanently(dropzone, box, transport):
    other_key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    connection = dropzone.connection(box.remote, private_key=other_key)
    with pytest.raises(DeliveryError) as raised:
        await transport.deliver(connection, upload("never.csv", b"x"))
    assert raised.value.code is ErrorCode.AUTH_FAILED and not raised.value.is_transient


async def test_a_missing_remote_directory_fails_permanently(dropzone, box, transport):
    connection = dropzone.connection("/inbox/no-such-dir")
    with pytest.raises(DeliveryError) as raised:
        await transport.deliver(connection, upload("never.csv", b"x"))
    assert raised.value.code is ErrorCode.REMOTE_DIR_MISSING


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "a\x00b/../..", "." * 300, "/" * 50])
async def test_hostile_names_never_leave_the_remote_directory(dropzone, box, transport, hostile):
    export_id = uuid.uuid4()
    name = render_file_name(
        "{external_ref}_{export_id}",
        external_ref=hostile,
        draft_id=uuid.uuid4(),
        export_id=export_id,
        on_date=date(2026, 3, 1),
        extension="csv",
    )
    remote = await transport.deliver(dropzone.connection(box.remote), upload(name, b"h"))
    assert remote.startswith(box.remote + "/") and remote.count("/") == 3
    (only,) = box.files()
    assert str(export_id) in only


async def test_unsafe_names_are_refused_before_connecting(dropzone, box, transport):
    with pytest.raises(DeliveryError) as raised:
        await transport.deliver(dropzone.connection(box.remote), upload("../escape.csv", b"x"))
    assert raised.value.code is ErrorCode.INVALID_CONFIGURATION


async def test_sshd_down_is_transient_and_the_pool_reconnects_after(dropzone, box, transport):
    connection = dropzone.connection(box.remote)
    await transport.deliver(connection, upload("before.csv", b"1"))
    dropzone.stop_sshd()
    try:
        await transport._pool.close()  # the established sessions die with the server
        with pytest.raises(DeliveryError) as raised:
            await transport.deliver(connection, upload("during.csv", b"2"))
        assert raised.value.code is ErrorCode.CONNECTION_REFUSED and raised.value.is_transient
    finally:
        dropzone.start_sshd()
    await transport.deliver(connection, upload("after.csv", b"3"))
    assert box.files() == ["after.csv", "before.csv"]


async def test_a_dropped_session_is_replaced_by_a_new_one(dropzone, box, transport):
    connection = dropzone.connection(box.remote)
    await transport.deliver(connection, upload("one.csv", b"1"))
    for pool in transport._pool._pools.values():
        for session in pool.sessions:
            session.connection.abort()
    await transport.deliver(connection, upload("two.csv", b"2"))
    assert box.files() == ["one.csv", "two.csv"]


async def test_the_connection_test_reports_each_check(dropzone, box, transport):
    report = await transport.check(dropzone.connection(box.remote))
    assert report.ok, report
    assert [c.name for c in report.checks] == [
        "target_allowed",
        "tcp_connect",
        "host_key",
        "authentication",
        "sftp_session",
        "remote_directory",
        "remote_directory_writable",
    ]
    assert box.files() == []
    wrong_pin = dropzone.connection(box.remote, host_key_fingerprint="SHA256:" + "B" * 43)
    bad = await transport.check(wrong_pin)
    assert not bad.ok and bad.error_code == "host_key_mismatch"
    assert [(c.name, c.ok) for c in bad.checks] == [
        ("target_allowed", True),
        ("tcp_connect", True),
        ("host_key", False),
    ]
    missing = await transport.check(dropzone.connection("/inbox/nope"))
    assert missing.error_code == "remote_dir_missing"


async def test_the_connection_test_reports_only_the_steps_that_really_happened(
    dropzone, box, transport
):
    opened = 0
    original = asyncssh.create_connection

    async def counting(*args, **kwargs):
        nonlocal opened
        opened += 1
        return await original(*args, **kwargs)

    asyncssh.create_connection = counting
    try:
        unreadable = await transport.check(dropzone.connection(box.remote, private_key="garbage"))
    finally:
        asyncssh.create_connection = original
    # a key that cannot be read stops the test before any connection is made
    assert opened == 0
    assert not unreadable.ok and unreadable.error_code == "invalid_configuration"
    assert [(c.name, c.ok) for c in unreadable.checks] == [
        ("target_allowed", True),
        ("authentication", False),
    ]
    assert "no connection was made" in unreadable.checks[-1].message

    other_key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    refused = await transport.check(dropzone.connection(box.remote, private_key=other_key))
    assert refused.error_code == "auth_failed"
    assert [(c.name, c.ok) for c in refused.checks] == [
        ("target_allowed", True),
        ("tcp_connect", True),
        ("host_key", True),
        ("authentication", False),
    ]

    dropzone.stop_sshd()
    try:
        down = await transport.check(dropzone.connection(box.remote))
    finally:
        dropzone.start_sshd()
    assert down.error_code == "connection_refused"
    assert [(c.name, c.ok) for c in down.checks] == [
        ("target_allowed", True),
        ("tcp_connect", False),
    ]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_pool_reports_its_sessions_by_state_and_its_errors_by_kind(
    dropzone, box, transport
):
    connection = dropzone.connection(box.remote)
    idle_before = sample("orderflow_export_sftp_sessions", state="idle")
    await transport.deliver(connection, upload("metered.csv", b"1"))
    assert sample("orderflow_export_sftp_sessions", state="idle") == idle_before + 1
    assert sample("orderflow_export_sftp_sessions", state="opening") == 0

    started = asyncio.Event()
    release = asyncio.Event()
    pool = transport._pool
    target = next(iter(pool._pools))

    async def hold() -> None:
        async with pool.session(target):
            started.set()
            await release.wait()

    busy_before = sample("orderflow_export_sftp_sessions", state="busy")
    holder = asyncio.create_task(hold())
    await asyncio.wait_for(started.wait(), 10)
    assert sample("orderflow_export_sftp_sessions", state="busy") == busy_before + 1
    assert sample("orderflow_export_sftp_sessions", state="idle") == idle_before
    release.set()
    await holder
    assert sample("orderflow_export_sftp_sessions", state="idle") == idle_before + 1

    mismatches = sample("orderflow_export_sftp_errors_total", kind="host_key_mismatch")
    wrong_pin = dropzone.connection(box.remote, host_key_fingerprint="SHA256:" + "C" * 43)
    with pytest.raises(DeliveryError):
        await transport.deliver(wrong_pin, upload("never.csv", b"x"))
    assert sample("orderflow_export_sftp_errors_total", kind="host_key_mismatch") == mismatches + 1

    await pool.close()
    assert sample("orderflow_export_sftp_sessions", state="idle") == idle_before
