"""The SFTP dropzone transport: uploads through the pool, and the connection test.

Upload = write `.<name>.part`, then `posix_rename` onto the final name. Before a
repeated attempt the final file is checked: same size and SHA-256 means delivered.
The connection test connects afresh and reports each step as it really happened.
"""

from __future__ import annotations

import hashlib
import posixpath
import uuid
from typing import Any

import asyncssh

from export_service.adapters.sftp.errors import KEY_UNREADABLE, classify
from export_service.adapters.sftp.pool import SftpPool, count_error
from export_service.adapters.sftp.probe import (
    Progress,
    Target,
    allowed_address,
    close_quietly,
    open_ssh,
)
from export_service.domain.connection import ErpConnection
from export_service.domain.errors import DeliveryError, ErrorCode
from export_service.domain.filenames import is_safe_file_name
from export_service.service_layer.ports import Check, ConnectionReport, Upload


class _StaleSession(Exception):
    def __init__(self, error: DeliveryError) -> None:
        super().__init__(str(error))
        self.error = error


class SftpDropzoneTransport:
    def __init__(self, pool: SftpPool, *, connect_timeout: float = 10.0) -> None:
        self._pool = pool
        self._timeout = connect_timeout

    async def deliver(self, connection: ErpConnection, upload: Upload) -> str:
        target = Target.of(connection)
        assert connection.sftp is not None
        if not is_safe_file_name(upload.file_name):
            raise DeliveryError(ErrorCode.INVALID_CONFIGURATION, "unsafe file name refused")
        try:
            try:
                return await self._deliver(target, connection.sftp.remote_directory, upload)
            except _StaleSession:
                # A pooled session died while idle (server restart, idle timeout): that is
                # not this export's fault, so try once more on a fresh session.
                try:
                    return await self._deliver(target, connection.sftp.remote_directory, upload)
                except _StaleSession as stale:
                    raise stale.error from None
        except DeliveryError as error:
            count_error(error.code)
            raise

    async def _deliver(self, target: Target, directory: str, upload: Upload) -> str:
        context = "connect"
        reused = False
        try:
            async with self._pool.session(target) as session:
                reused = session.uploads > 0
                session.uploads += 1
                context = "directory"
                if directory not in session.checked_dirs:
                    await _check_directory(session.sftp, directory)
                    session.checked_dirs.add(directory)
                context = "upload"
                try:
                    return await _upload(session.sftp, directory, upload)
                except asyncssh.SFTPNoSuchFile:
                    session.checked_dirs.discard(directory)
                    raise
        except DeliveryError:
            raise
        except Exception as exc:
            error = classify(exc, context=context)
            if reused and error.code is ErrorCode.CONNECTION_LOST:
                raise _StaleSession(error) from exc
            raise error from exc

    async def check(self, connection: ErpConnection) -> ConnectionReport:
        """Connect afresh and report each step in words, as far as it really got."""
        checks: list[Check] = []
        try:
            target = Target.of(connection)
        except DeliveryError as unset:
            return ConnectionReport(False, checks, str(unset.code), unset.message)
        assert connection.sftp is not None
        directory = connection.sftp.remote_directory
        try:
            await allowed_address(
                target.host, target.port, allow_private=self._pool.allow_private_targets
            )
        except DeliveryError as refused:
            if refused.code is ErrorCode.INVALID_CONFIGURATION:
                checks.append(Check("target_allowed", False, refused.message))
            else:  # the name does not resolve: nothing to connect to
                checks.append(Check("target_allowed", True, "the host is not a refused address"))
                checks.append(Check("tcp_connect", False, f"failed: {refused.message}"))
            return ConnectionReport(False, checks, str(refused.code), refused.message)
        checks.append(Check("target_allowed", True, "the host is not a refused address"))
        progress = Progress()
        try:
            ssh, sftp, _ = await open_ssh(
                target,
                self._timeout,
                allow_private=self._pool.allow_private_targets,
                progress=progress,
            )
        except Exception as exc:
            error = classify(exc)
            checks.extend(connect_checks(progress, error))
            return ConnectionReport(False, checks, str(error.code), error.message)
        checks.extend(connect_checks(progress, None))
        try:
            return await _check_remote_directory(sftp, directory, checks)
        finally:
            close_quietly(ssh, sftp)


#: The connection steps the report shows, with what each says when it passed. A key
#: that cannot be read fails "authentication" before any connection is made.
_REPORTED_STEPS = (
    ("tcp_connect", "the server answers"),
    ("host_key", "the host key matches the pinned fingerprint"),
    ("authentication", "the credentials are accepted"),
    ("sftp_session", "an SFTP session opens"),
)


def connect_checks(progress: Progress, error: DeliveryError | None) -> list[Check]:
    """One check per step reached, then the step that failed (none when all passed)."""
    if "private_key" not in progress.reached:
        message = f"{KEY_UNREADABLE}; no connection was made"
        return [Check("authentication", False, message)]
    checks = []
    for step, ok_message in _REPORTED_STEPS:
        if step in progress.reached:
            checks.append(Check(step, True, ok_message))
            continue
        reason = error.message if error is not None else "not reached"
        checks.append(Check(step, False, f"failed: {reason}"))
        break
    return checks


async def _check_remote_directory(
    sftp: asyncssh.SFTPClient, directory: str, checks: list[Check]
) -> ConnectionReport:
    try:
        await _check_directory(sftp, directory)
    except Exception as exc:
        error = classify(exc, context="directory")
        checks.append(Check("remote_directory", False, error.message))
        return ConnectionReport(False, checks, str(error.code), error.message)
    checks.append(Check("remote_directory", True, f"{directory} exists"))
    probe = posixpath.join(directory, f".orderflow-probe-{uuid.uuid4().hex}")
    try:
        async with sftp.open(probe, "wb") as handle:
            await handle.write(b"probe")
        await sftp.remove(probe)
    except Exception as exc:
        error = classify(exc, context="upload")
        checks.append(Check("remote_directory_writable", False, error.message))
        return ConnectionReport(False, checks, str(error.code), error.message)
    checks.append(Check("remote_directory_writable", True, f"{directory} is writable"))
    return ConnectionReport(True, checks, None, "the dropzone is ready")


async def _check_directory(sftp: asyncssh.SFTPClient, directory: str) -> None:
    attrs = await sftp.stat(directory)
    if attrs.type != asyncssh.FILEXFER_TYPE_DIRECTORY:
        raise DeliveryError(ErrorCode.REMOTE_DIR_MISSING, f"{directory} is not a directory")


async def _already_there(sftp: asyncssh.SFTPClient, path: str, upload: Upload) -> bool:
    try:
        attrs = await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile:
        return False
    if attrs.size != len(upload.content):
        return False
    async with sftp.open(path, "rb") as handle:
        content: Any = await handle.read()
    return hashlib.sha256(content).hexdigest() == upload.checksum


async def _upload(sftp: asyncssh.SFTPClient, directory: str, upload: Upload) -> str:
    final = posixpath.join(directory, upload.file_name)
    if upload.check_existing and await _already_there(sftp, final, upload):
        return final
    temp = posixpath.join(directory, f".{upload.file_name}.part")
    async with sftp.open(temp, "wb") as handle:
        await handle.write(upload.content)
    try:
        await sftp.posix_rename(temp, final)
    except asyncssh.SFTPNoSuchFile:
        # Another attempt renamed the same temp file first: delivered if the content is ours.
        if await _already_there(sftp, final, upload):
            return final
        raise
    return final
