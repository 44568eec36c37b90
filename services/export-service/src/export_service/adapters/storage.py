"""Rendered artifacts on the local filesystem (written atomically, keys stay inside root)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


class FsArtifactStore:
    def __init__(self, root: str | Path) -> None:
        self._root = Path(os.path.abspath(root))
        #: directories this process made or found (one per org and day): not made again
        self._made: set[Path] = set()

    def path_of(self, key: str) -> Path:
        # Keys are built by the service from ids; still, never let one climb out.
        path = Path(os.path.normpath(self._root / key))
        if not path.is_relative_to(self._root) or path == self._root:
            raise ValueError(f"storage key {key!r} leaves the storage directory")
        return path

    async def put(self, key: str, content: bytes) -> None:
        await asyncio.to_thread(self._write, self.path_of(key), content)

    async def get(self, key: str) -> bytes | None:
        path = self.path_of(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    def _write(self, path: Path, content: bytes) -> None:
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            handle = open(temp, "wb")
        except FileNotFoundError:  # the directory was removed since: make it again
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(temp, "wb")
        with handle:
            handle.write(content)
        os.replace(temp, path)
