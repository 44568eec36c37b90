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


def upload(name: str, content: bytes, *, check_existing: bool = False) -> Upload:
    return Upload(name, content, hashlib.sha256(content).hexdigest(), check_existing)


@pytest.fixture
async def transport():
    pool = SftpPool(connect_timeout=5)
    yield SftpDropzoneTransport(pool, connect_timeout=5)
    await pool.close()


async def test_a_file_appears_once_with_its_content_and_no_temp_file(clean_dropzone, transport):
    connection = clean_dropzone.connection()
    remote = await transport.deliver(connection, upload("order-1.csv", b"a,b\r\n1,2\r\n"))
    assert remote == "/inbox/order-1.csv"
    assert clean_dropzone.files() == ["order-1.csv"]
    assert (clean_dropzone.inbox / "order-1.csv").read_bytes() == b"a,b\r\n1,2\r\n"


async def test_a_repeated_attempt_finds_the_delivered_file_and_does_not_rewrite_it(
    clean_dropzone, transport
):
    connection = clean_dropzone.connection()
    await transport.deliver(connection, upload("order-2.csv", b"x" * 100))
    first = (clean_dropzone.inbox / "order-2.csv").stat().st_ino
    # a leftover temp file of a killed attempt is replaced, not left behind
    leftover = clean_dropzone.inbox / ".order-3.csv.part"
    leftover.write_bytes(b"half")
    owner = clean_dropzone.inbox.stat()
    os.chown(leftover, owner.st_uid, owner.st_gid)
    await transport.deliver(connection, upload("order-2.csv", b"x" * 100, check_existing=True))
    await transport.deliver(connection, upload("order-3.csv", b"y" * 10, check_existing=True))
    assert (clean_dropzone.inbox / "order-2.csv").stat().st_ino == first
    assert clean_dropzone.files() == ["order-2.csv", "order-3.csv"]
    assert (clean_dropzone.inbox / "order-3.csv").read_bytes() == b"y" * 10


async def test_many_uploads_share_few_connections_and_are_pipelined(clean_dropzone, transport):
    connection = clean_dropzone.connection()
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
        begin = time.perf_counter()
        await asyncio.gather(
            *(
                transport.deliver(connection, upload(f"bulk-{i:04}.csv", content))
                for i in range(count)
            )
        )
        elapsed = time.perf_counter() - begin
    finally:
        asyncssh.create_connection = original
    assert len(clean_dropzone.files()) == count
    assert opened <= 2
    print(f"\nSFTP: {count} files of 4 KB in {elapsed:.2f}s = {count / elapsed:.0f} files/s")


async def test_a_wrong_pinned_host_key_is_refused(clean_dropzone, transport):
    connection = clean_dropzone.connection(host_key_fingerprint="SHA256:" + "A" * 43)
    with pytest.raises(DeliveryError) as raised:
        await transport.deliver(connection, upload("never.csv", b"x"))
    assert raised.value.code is ErrorCode.HOST_KEY_MISMATCH and not raised.value.is_transient
    assert clean_dropzone.files() == []


async def test_wrong_credentials_fail_permanently(clean_dropzone, transport):
    other_key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    connection = clean_dropzone.connection(private_key=other_key)
    with pytest.raises(DeliveryError) as raised:
        await transport.deliver(connection, upload("never.csv", b"x"))
    assert raised.value.code is ErrorCode.AUTH_FAILED and not raised.value.is_transient


async def test_a_missing_remote_directory_fails_permanently(clean_dropzone, transport):
    connection = clean_dropzone.connection(remote_directory="/no-such-dir")
    with pytest.raises(DeliveryError) as raised:
        await transport.deliver(connection, upload("never.csv", b"x"))
    assert raised.value.code is ErrorCode.REMOTE_DIR_MISSING


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "a\x00b/../..", "." * 300, "/" * 50])
async def test_hostile_names_never_leave_the_remote_directory(clean_dropzone, transport, hostile):
    export_id = uuid.uuid4()
    name = render_file_name(
        "{external_ref}_{export_id}",
        external_ref=hostile,
        draft_id=uuid.uuid4(),
        export_id=export_id,
        on_date=date(2026, 3, 1),
        extension="csv",
    )
    remote = await transport.deliver(clean_dropzone.connection(), upload(name, b"h"))
    assert remote.startswith("/inbox/") and remote.count("/") == 2
    (only,) = clean_dropzone.files()
    assert str(export_id) in only


async def test_unsafe_names_are_refused_before_connecting(clean_dropzone, transport):
    with pytest.raises(DeliveryError) as raised:
        await transport.deliver(clean_dropzone.connection(), upload("../escape.csv", b"x"))
    assert raised.value.code is ErrorCode.INVALID_CONFIGURATION


async def test_sshd_down_is_transient_and_the_pool_reconnects_after(clean_dropzone, transport):
    connection = clean_dropzone.connection()
    await transport.deliver(connection, upload("before.csv", b"1"))
    clean_dropzone.component.stop()
    try:
        await transport._pool.close()  # the established sessions die with the server
        with pytest.raises(DeliveryError) as raised:
            await transport.deliver(connection, upload("during.csv", b"2"))
        assert raised.value.code is ErrorCode.CONNECTION_REFUSED and raised.value.is_transient
    finally:
        clean_dropzone.component.start(wait=True)
    await transport.deliver(connection, upload("after.csv", b"3"))
    assert clean_dropzone.files() == ["after.csv", "before.csv"]


async def test_a_dropped_session_is_replaced_by_a_new_one(clean_dropzone, transport):
    connection = clean_dropzone.connection()
    await transport.deliver(connection, upload("one.csv", b"1"))
    for pool in transport._pool._pools.values():
        for session in pool.sessions:
            session.connection.abort()
    await transport.deliver(connection, upload("two.csv", b"2"))
    assert clean_dropzone.files() == ["one.csv", "two.csv"]


async def test_the_connection_test_reports_each_check(clean_dropzone, transport):
    report = await transport.check(clean_dropzone.connection())
    assert report.ok, report
    assert [c.name for c in report.checks] == [
        "tcp_connect",
        "host_key",
        "authentication",
        "sftp_session",
        "remote_directory",
        "remote_directory_writable",
    ]
    assert clean_dropzone.files() == []
    wrong_pin = clean_dropzone.connection(host_key_fingerprint="SHA256:" + "B" * 43)
    bad = await transport.check(wrong_pin)
    assert not bad.ok and bad.error_code == "host_key_mismatch"
    assert [(c.name, c.ok) for c in bad.checks] == [("tcp_connect", True), ("host_key", False)]
    missing = await transport.check(clean_dropzone.connection(remote_directory="/nope"))
    assert missing.error_code == "remote_dir_missing"
