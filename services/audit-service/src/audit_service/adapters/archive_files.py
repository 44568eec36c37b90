"""Archive files on disk: written whole and fsynced before the log lets go of a row."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


class ArchiveDirError(RuntimeError):
    """AUDIT_ARCHIVE_DIR is missing, not a directory or not writable."""


@dataclass(frozen=True)
class WrittenArchive:
    path: Path
    relative: str
    sha256: str
    bytes: int


class ArchiveDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    def check(self) -> None:
        if not self.root.is_dir():
            raise ArchiveDirError(f"AUDIT_ARCHIVE_DIR {self.root} is not a directory")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise ArchiveDirError(f"AUDIT_ARCHIVE_DIR {self.root} is not writable by this user")

    def write(self, relative: str, content: bytes) -> WrittenArchive:
        """Write `content` to root/relative durably: a temporary file in the same
        directory, fsync, rename over any earlier copy (a run killed before its prune
        committed leaves one with the same rows), fsync the directory."""
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(content)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        for directory in {target.parent, target.parent.parent, self.root}:
            _fsync_dir(directory)
        return WrittenArchive(
            path=target,
            relative=relative,
            sha256=hashlib.sha256(content).hexdigest(),
            bytes=len(content),
        )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
