"""Local-directory dropzone: the same temp-name + rename protocol as SFTP, on this host."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from export_service.domain.connection import ErpConnection
from export_service.domain.errors import DeliveryError, ErrorCode
from export_service.domain.filenames import is_safe_file_name
from export_service.service_layer.ports import Check, ConnectionReport, Upload


class LocalDropzoneTransport:
    """Writes into a directory of this host; with `roots`, only below one of them."""

    def __init__(self, roots: Sequence[Path] = ()) -> None:
        self._roots = [Path(os.path.realpath(r)) for r in roots]

    def _allowed(self, directory: Path) -> bool:
        real = Path(os.path.realpath(directory))
        return not self._roots or any(real.is_relative_to(root) for root in self._roots)

    async def deliver(self, connection: ErpConnection, upload: Upload) -> str:
        if connection.local is None:
            raise DeliveryError(ErrorCode.INVALID_CONFIGURATION, "no local directory configured")
        if not is_safe_file_name(upload.file_name):
            raise DeliveryError(ErrorCode.INVALID_CONFIGURATION, "unsafe file name refused")
        directory = Path(connection.local.directory)
        if not self._allowed(directory):
            raise DeliveryError(
                ErrorCode.INVALID_CONFIGURATION, "the directory is outside the allowed roots"
            )
        return await asyncio.to_thread(_deliver, directory, upload)

    async def check(self, connection: ErpConnection) -> ConnectionReport:
        if connection.local is None:
            return ConnectionReport(False, [], "invalid_configuration", "no directory configured")
        directory = Path(connection.local.directory)
        if not self._allowed(directory):
            return ConnectionReport(
                False, [], "invalid_configuration", "the directory is outside the allowed roots"
            )
        exists, writable = await asyncio.to_thread(_probe, directory)
        checks = [
            Check("directory_exists", exists, "exists" if exists else "is missing"),
            Check("directory_writable", writable, "writable" if writable else "not writable"),
        ]
        if not exists:
            return ConnectionReport(False, checks, "remote_dir_missing", f"{directory} is missing")
        if not writable:
            return ConnectionReport(
                False, checks, "remote_permission_denied", f"{directory} is not writable"
            )
        return ConnectionReport(True, checks, None, "the directory is ready")


def _probe(directory: Path) -> tuple[bool, bool]:
    exists = directory.is_dir()
    return exists, exists and os.access(directory, os.W_OK | os.X_OK)


def _deliver(directory: Path, upload: Upload) -> str:
    if not directory.is_dir():
        raise DeliveryError(ErrorCode.REMOTE_DIR_MISSING, f"directory {directory} does not exist")
    final = directory / upload.file_name
    if upload.check_existing and _same_file(final, upload):
        return str(final)
    temp = directory / f".{upload.file_name}.part"
    try:
        with open(temp, "wb") as handle:
            handle.write(upload.content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
    except PermissionError as exc:
        raise DeliveryError(ErrorCode.REMOTE_PERMISSION_DENIED, str(exc.strerror)) from exc
    except OSError as exc:
        raise DeliveryError(ErrorCode.LOCAL_IO_ERROR, str(exc.strerror)) from exc
    return str(final)


def _same_file(path: Path, upload: Upload) -> bool:
    try:
        if path.stat().st_size != len(upload.content):
            return False
        return hashlib.sha256(path.read_bytes()).hexdigest() == upload.checksum
    except FileNotFoundError:
        return False
