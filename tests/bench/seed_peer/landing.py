"""When files land in a directory, by inotify, read in the caller's asyncio loop.

A file "lands" when it appears under its final name: the rename of an upload's
`.<name>.part` (IN_MOVED_TO) or a file written in place being closed (IN_CLOSE_WRITE).
The time is `time.monotonic()` when the loop reads the event, so it compares with
the client's time of the 202 taken in the same loop. Linux only (ctypes onto libc).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import struct
import time
from pathlib import Path
from types import TracebackType

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


class Landings:
    """`async with Landings(dir, prefix) as landed:` then `landed.times[name]`."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self.times: dict[str, float] = {}
        self._fd = -1
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Landings:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = IN_MOVED_TO | IN_CLOSE_WRITE
        if libc.inotify_add_watch(fd, os.fsencode(self.directory), mask) < 0:
            os.close(fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {self.directory}")
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._read)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)

    def _read(self) -> None:
        now = time.monotonic()
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        offset = 0
        while offset < len(data):
            _, _, _, length = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            name = data[start : start + length].rstrip(b"\0").decode()
            offset = start + length
            if name.startswith(self.prefix):
                self.times.setdefault(name, now)
        self._changed.set()

    async def wait_for(self, count: int) -> None:
        """Until `count` files have landed (bound it with `asyncio.timeout`)."""
        while len(self.times) < count:
            self._changed.clear()
            await self._changed.wait()
