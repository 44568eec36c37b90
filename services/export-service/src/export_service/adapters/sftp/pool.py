"""A small pool of SSH connections (each with one SFTP session) per target.

Many uploads share a session at once (SFTP requests are pipelined). A session that
fails is dropped and the next upload reconnects. The pool reports its size by state
and its failures by kind (`orderflow_export_sftp_*`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from functools import cache

import asyncssh
from prometheus_client import Counter, Gauge

from export_service.adapters.sftp.errors import breaks_session, classify
from export_service.adapters.sftp.probe import Target, close_quietly, open_ssh
from export_service.domain.errors import ErrorCode

log = logging.getLogger(__name__)

#: A session's states as the size gauge counts them.
OPENING, IDLE, BUSY = "opening", "idle", "busy"


@dataclass(frozen=True)
class SftpMetrics:
    sessions: Gauge
    errors: Counter


@cache
def sftp_metrics() -> SftpMetrics:
    """Registered once per process, on first use."""
    sessions = Gauge(
        "orderflow_export_sftp_sessions",
        "Pooled SFTP sessions (one SSH connection each) by state: opening (connecting),"
        " idle (open, no upload running), busy (uploads running on it).",
        ["state"],
    )
    for state in (OPENING, IDLE, BUSY):
        sessions.labels(state)
    return SftpMetrics(
        sessions=sessions,
        errors=Counter(
            "orderflow_export_sftp_errors_total",
            "SFTP delivery failures by kind (the error code: connection_refused,"
            " host_key_mismatch, auth_failed, connection_lost, remote_dir_missing, ...).",
            ["kind"],
        ),
    )


def count_error(code: ErrorCode) -> None:
    sftp_metrics().errors.labels(str(code)).inc()


@dataclass(eq=False)
class Session:
    connection: asyncssh.SSHClientConnection
    sftp: asyncssh.SFTPClient
    in_flight: int = 0
    uploads: int = 0
    broken: bool = False
    checked_dirs: set[str] = field(default_factory=set)
    state: str | None = None

    def __post_init__(self) -> None:
        self._move(IDLE)

    def _move(self, state: str | None) -> None:
        gauge = sftp_metrics().sessions
        if self.state is not None:
            gauge.labels(self.state).dec()
        if state is not None:
            gauge.labels(state).inc()
        self.state = state

    def begin(self) -> None:
        self.in_flight += 1
        if not self.broken:
            self._move(BUSY)

    def end(self) -> None:
        self.in_flight -= 1
        if not self.broken and self.in_flight == 0:
            self._move(IDLE)

    @property
    def usable(self) -> bool:
        return not self.broken and not self.connection.is_closed()

    def close(self) -> None:
        self.broken = True
        self._move(None)
        close_quietly(self.connection, self.sftp)


@dataclass(frozen=True)
class PoolLimits:
    """What every target's pool of an SftpPool keeps to."""

    connect_timeout: float
    sessions_per_target: int
    uploads_per_session: int
    allow_private_targets: bool


class _TargetPool:
    def __init__(self, target: Target, limits: PoolLimits) -> None:
        self.target = target
        self.limits = limits
        self.sessions: list[Session] = []
        self.host_key_algs: Sequence[str] | None = None
        self.last_used = time.monotonic()
        self._lock = asyncio.Lock()

    def _pick(self) -> Session | None:
        live = []
        for session in self.sessions:
            if session.usable:
                live.append(session)
            else:
                session.close()  # closed by the server or broken: out of the pool
        self.sessions = live
        if not live:
            return None
        best = min(live, key=lambda s: s.in_flight)
        limits = self.limits
        if best.in_flight >= limits.uploads_per_session and len(live) < limits.sessions_per_target:
            return None
        return best

    async def acquire(self) -> Session:
        session = self._pick()
        if session is not None:
            return session
        async with self._lock:
            session = self._pick()
            if session is not None:
                return session
            return await self._open()

    async def _open(self) -> Session:
        opening = sftp_metrics().sessions.labels(OPENING)
        opening.inc()
        try:
            connection, sftp, algs = await open_ssh(
                self.target,
                self.limits.connect_timeout,
                self.host_key_algs,
                allow_private=self.limits.allow_private_targets,
            )
        except Exception as exc:
            raise classify(exc) from exc
        finally:
            opening.dec()
        self.host_key_algs = algs
        session = Session(connection, sftp)
        self.sessions.append(session)
        log.info("sftp session opened to %r (%d open)", self.target, len(self.sessions))
        return session

    def close(self) -> None:
        for session in self.sessions:
            session.close()
        self.sessions = []


class SftpPool:
    """A small pool of SSH connections per target, shared by all deliveries."""

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        sessions_per_target: int = 2,
        uploads_per_session: int = 16,
        idle_seconds: float = 300.0,
        allow_private_targets: bool = False,
    ) -> None:
        self._limits = PoolLimits(
            connect_timeout, sessions_per_target, uploads_per_session, allow_private_targets
        )
        self.allow_private_targets = allow_private_targets
        self._pools: dict[Target, _TargetPool] = {}
        self._idle_seconds = idle_seconds

    @contextlib.asynccontextmanager
    async def session(self, target: Target) -> AsyncIterator[Session]:
        self._close_idle(target)
        pool = self._pools.get(target)
        if pool is None:
            pool = self._pools[target] = _TargetPool(target, self._limits)
        pool.last_used = time.monotonic()
        session = await pool.acquire()
        session.begin()
        try:
            yield session
        except (asyncssh.Error, OSError, EOFError) as exc:
            if breaks_session(exc):
                session.close()  # the connection is unusable; the next upload reconnects
            raise
        finally:
            session.end()

    def _close_idle(self, current: Target) -> None:
        """Close the sessions of targets unused for a while (e.g. a changed connection)."""
        now = time.monotonic()
        for target, pool in list(self._pools.items()):
            if target != current and now - pool.last_used > self._idle_seconds:
                if not any(s.in_flight for s in pool.sessions):
                    self.forget(target)

    def forget(self, target: Target) -> None:
        pool = self._pools.pop(target, None)
        if pool is not None:
            pool.close()

    async def close(self) -> None:
        for pool in list(self._pools.values()):
            pool.close()
        self._pools.clear()
