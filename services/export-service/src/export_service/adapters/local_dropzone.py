"""Local-directory dropzone: the same temp-name + rename protocol as SFTP, on this host.

Tenants choose the directory, so it is confined: it must lie inside
`<root>/<org_id>/` for one of the configured roots (`EXPORT_LOCAL_DROPZONE_ROOTS`);
with no root configured the connector is disabled. Symlinks and `..` are resolved
before the check, and the check is made again at delivery on the directory actually
opened (its `/proc/self/fd` path), after which every file operation is relative to
that open directory and refuses to follow a symlink, so a symlink swapped in later
cannot lead a write out of the org's root.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from export_service.domain.connection import ErpConnection
from export_service.domain.errors import DeliveryError, ErrorCode
from export_service.domain.filenames import is_safe_file_name
from export_service.service_layer.ports import Check, ConnectionReport, Upload

DISABLED = (
    "the local_dropzone connector is disabled here (no EXPORT_LOCAL_DROPZONE_ROOTS configured)"
)


class LocalRoots:
    """Where an org's local dropzones may lie: `<root>/<org_id>/...` for a configured root."""

    def __init__(self, roots: Sequence[Path | str] = ()) -> None:
        self._roots = [Path(os.path.realpath(r)) for r in roots]

    @property
    def enabled(self) -> bool:
        return bool(self._roots)

    def describe(self, org_id: str) -> str:
        return " or ".join(str(root / org_id) for root in self._roots)

    def org_dirs(self, org_id: str) -> list[Path]:
        if not _usable_org_dir_name(org_id):
            return []
        return [root / org_id for root in self._roots]

    def refusal(self, org_id: str, directory: str) -> str | None:
        """Why `directory` may not be this org's dropzone (None: it may)."""
        if not self._roots:
            return DISABLED
        if not _usable_org_dir_name(org_id):
            return "this organisation's id cannot name a directory: no local_dropzone for it"
        real = Path(os.path.realpath(directory))
        if self.contains(org_id, real):
            return None
        return (
            f"local.directory must lie inside {self.describe(org_id)} "
            "(after resolving symlinks and '..')"
        )

    def contains(self, org_id: str, real_path: Path) -> bool:
        return any(real_path.is_relative_to(d) for d in self.org_dirs(org_id))


def _usable_org_dir_name(org_id: str) -> bool:
    return (
        bool(org_id)
        and org_id not in (".", "..")
        and "/" not in org_id
        and "\x00" not in org_id
        and org_id.isprintable()
    )


class LocalDropzoneTransport:
    """Writes into a directory of this host, only inside the org's part of a root."""

    def __init__(self, roots: LocalRoots | Sequence[Path | str] = ()) -> None:
        self.roots = roots if isinstance(roots, LocalRoots) else LocalRoots(roots)

    async def deliver(self, connection: ErpConnection, upload: Upload) -> str:
        if connection.local is None:
            raise DeliveryError(ErrorCode.INVALID_CONFIGURATION, "no local directory configured")
        if not is_safe_file_name(upload.file_name):
            raise DeliveryError(ErrorCode.INVALID_CONFIGURATION, "unsafe file name refused")
        refusal = self.roots.refusal(connection.org_id, connection.local.directory)
        if refusal:
            raise DeliveryError(ErrorCode.INVALID_CONFIGURATION, refusal)
        return await asyncio.to_thread(
            _deliver, self.roots, connection.org_id, Path(connection.local.directory), upload
        )

    async def check(self, connection: ErpConnection) -> ConnectionReport:
        if connection.local is None:
            return ConnectionReport(False, [], "invalid_configuration", "no directory configured")
        refusal = self.roots.refusal(connection.org_id, connection.local.directory)
        if refusal:
            # nothing on the host is looked at for a directory outside the org's root
            return ConnectionReport(
                False,
                [Check("directory_allowed", False, refusal)],
                "invalid_configuration",
                refusal,
            )
        directory = Path(connection.local.directory)
        exists, writable = await asyncio.to_thread(_probe, directory)
        checks = [
            Check("directory_allowed", True, "inside the organisation's root"),
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


@contextlib.contextmanager
def _open_confined(roots: LocalRoots, org_id: str, directory: Path) -> Iterator[int]:
    """The directory opened (a descriptor), checked to be the org's at this moment."""
    try:
        fd = os.open(os.path.realpath(directory), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError as exc:
        raise DeliveryError(
            ErrorCode.REMOTE_DIR_MISSING, f"directory {directory} does not exist"
        ) from exc
    except NotADirectoryError as exc:
        raise DeliveryError(
            ErrorCode.REMOTE_DIR_MISSING, f"{directory} is not a directory"
        ) from exc
    except OSError as exc:  # ELOOP: a symlink was swapped in between resolving and opening
        raise DeliveryError(
            ErrorCode.INVALID_CONFIGURATION, f"cannot open {directory}: {exc.strerror}"
        ) from exc
    try:
        opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if not roots.contains(org_id, opened):
            raise DeliveryError(
                ErrorCode.INVALID_CONFIGURATION,
                "the directory resolves outside the organisation's root",
            )
        yield fd
    finally:
        os.close(fd)


def _deliver(roots: LocalRoots, org_id: str, directory: Path, upload: Upload) -> str:
    final = directory / upload.file_name
    temp_name = f".{upload.file_name}.part"
    with _open_confined(roots, org_id, directory) as dir_fd:
        if upload.check_existing and _same_file(dir_fd, upload):
            return str(final)
        try:
            fd = os.open(
                temp_name,
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                0o644,
                dir_fd=dir_fd,
            )
            with open(fd, "wb") as handle:
                handle.write(upload.content)
                handle.flush()
                os.fsync(handle.fileno())
            # rename never follows a symlink at either name
            os.replace(temp_name, upload.file_name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except PermissionError as exc:
            raise DeliveryError(ErrorCode.REMOTE_PERMISSION_DENIED, str(exc.strerror)) from exc
        except OSError as exc:
            raise DeliveryError(ErrorCode.LOCAL_IO_ERROR, str(exc.strerror)) from exc
    return str(final)


def _same_file(dir_fd: int, upload: Upload) -> bool:
    try:
        fd = os.open(upload.file_name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except (FileNotFoundError, OSError):
        return False
    with open(fd, "rb") as handle:
        if os.fstat(handle.fileno()).st_size != len(upload.content):
            return False
        return hashlib.sha256(handle.read()).hexdigest() == upload.checksum
