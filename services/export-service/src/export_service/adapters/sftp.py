"""SFTP dropzone over asyncssh: pinned host keys, pooled sessions, pipelined uploads.

- The server's host key must have the pinned SHA256 fingerprint; nothing else is
  trusted (`known_hosts` is an empty trust list plus `validate_host_public_key`).
  asyncssh prefers RSA host keys, so when the server shows a key of another type
  than the pinned one, the other key types are tried once and the one that matches
  is remembered for the target.
- One small pool of SSH connections (each with one SFTP session) per target; many
  uploads share a session at once (SFTP requests are pipelined). A session that
  fails is dropped and the next upload reconnects.
- Upload = write `.<name>.part`, then `posix_rename` onto the final name. Before a
  repeated attempt the final file is checked: same size and SHA-256 means delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import posixpath
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from export_service.domain.connection import ErpConnection
from export_service.domain.errors import DeliveryError, ErrorCode
from export_service.domain.filenames import is_safe_file_name
from export_service.service_layer.ports import Check, ConnectionReport, Upload

log = logging.getLogger(__name__)

HOST_KEY_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("ssh-ed25519",),
    ("ecdsa-sha2-nistp256",),
    ("ecdsa-sha2-nistp384",),
    ("ecdsa-sha2-nistp521",),
    ("rsa-sha2-512", "rsa-sha2-256"),
    ("ssh-ed448",),
)
PREFERRED_HOST_KEY_ALGS: tuple[str, ...] = tuple(a for f in HOST_KEY_FAMILIES for a in f)
#: AES-GCM first: one AEAD call per packet costs less CPU here than asyncssh's
#: ChaCha20-Poly1305 (two cipher contexts per packet); all are strong.
PREFERRED_CIPHERS: tuple[str, ...] = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes128-ctr",
)


def _normalise_fingerprint(value: str) -> str:
    return value.strip().rstrip("=")


def fingerprints_match(seen: str, pinned: str) -> bool:
    return hmac.compare_digest(_normalise_fingerprint(seen), _normalise_fingerprint(pinned))


def classify(exc: BaseException, *, context: str = "connect") -> DeliveryError:
    """Map a network, SSH or SFTP failure to a precise, transient-or-permanent code."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return DeliveryError(
            ErrorCode.HOST_KEY_MISMATCH, "the server's host key does not match the pinned one"
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return DeliveryError(ErrorCode.AUTH_FAILED, "the server refused the credentials")
    if isinstance(exc, asyncssh.KeyImportError):
        return DeliveryError(ErrorCode.INVALID_CONFIGURATION, "the private key cannot be read")
    if isinstance(exc, asyncssh.SFTPNoSuchFile):
        if context in ("directory", "upload"):
            return DeliveryError(
                ErrorCode.REMOTE_DIR_MISSING, "the remote directory does not exist"
            )
        return DeliveryError(ErrorCode.REMOTE_IO_ERROR, f"no such file: {exc.reason}")
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return DeliveryError(
            ErrorCode.REMOTE_PERMISSION_DENIED, "the server denied writing in the remote directory"
        )
    if isinstance(exc, asyncssh.SFTPConnectionLost):
        return DeliveryError(ErrorCode.CONNECTION_LOST, "SSH connection lost")
    if isinstance(exc, asyncssh.SFTPError):
        return DeliveryError(ErrorCode.REMOTE_IO_ERROR, f"SFTP error: {exc.reason}")
    if isinstance(exc, asyncssh.DisconnectError | asyncssh.ChannelOpenError):
        return DeliveryError(ErrorCode.CONNECTION_LOST, f"SSH connection lost: {exc.reason}")
    if isinstance(exc, ConnectionRefusedError):
        return DeliveryError(ErrorCode.CONNECTION_REFUSED, "the server refused the connection")
    if isinstance(exc, TimeoutError):
        return DeliveryError(ErrorCode.CONNECTION_TIMEOUT, "the server did not answer in time")
    if isinstance(exc, socket.gaierror):
        return DeliveryError(ErrorCode.HOST_UNREACHABLE, "the host name cannot be resolved")
    if isinstance(exc, ConnectionError | OSError | EOFError | BrokenPipeError):
        return DeliveryError(ErrorCode.CONNECTION_LOST, f"network error: {type(exc).__name__}")
    return DeliveryError(ErrorCode.INTERNAL_ERROR, f"unexpected {type(exc).__name__}")


PRIVATE_TARGET_REFUSED = (
    "the SFTP host is a loopback or link-local address, refused outside development "
    "(EXPORT_SFTP_ALLOW_PRIVATE_TARGETS allows it)"
)


def is_refused_address(address: str) -> bool:
    """Loopback, link-local or unspecified (0.0.0.0 reaches this host too), IPv4-mapped too."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True  # not an address we can judge: refuse
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified


async def allowed_address(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to: resolved once and checked, so a name that resolves
    differently later (DNS rebinding) cannot lead to a refused address. With
    `allow_private` the host is used as given."""
    if allow_private:
        return host
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DeliveryError(ErrorCode.HOST_UNREACHABLE, "the host name cannot be resolved") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses or any(is_refused_address(a) for a in addresses):
        raise DeliveryError(ErrorCode.INVALID_CONFIGURATION, PRIVATE_TARGET_REFUSED)
    return addresses[0]


@dataclass(frozen=True)
class Target:
    """Everything a connection needs; equal targets share a pool."""

    host: str
    port: int
    username: str
    fingerprint: str
    private_key: str | None
    password: str | None

    @classmethod
    def of(cls, connection: ErpConnection) -> Target:
        if connection.sftp is None:
            raise DeliveryError(ErrorCode.INVALID_CONFIGURATION, "no SFTP settings configured")
        return cls(
            host=connection.sftp.host,
            port=connection.sftp.port,
            username=connection.sftp.username,
            fingerprint=connection.sftp.host_key_fingerprint,
            private_key=connection.secrets.private_key,
            password=connection.secrets.password,
        )

    def __repr__(self) -> str:
        return f"Target({self.username}@{self.host}:{self.port})"


class _PinnedHostKeyClient(asyncssh.SSHClient):
    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint
        self.seen_algorithm: str | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.seen_algorithm = key.get_algorithm()
        return fingerprints_match(key.get_fingerprint("sha256"), self._fingerprint)


@dataclass(eq=False)
class Session:
    connection: asyncssh.SSHClientConnection
    sftp: asyncssh.SFTPClient
    in_flight: int = 0
    uploads: int = 0
    broken: bool = False
    checked_dirs: set[str] = field(default_factory=set)

    def close(self) -> None:
        self.broken = True
        with contextlib.suppress(Exception):
            self.sftp.exit()
        self.connection.close()


async def open_session(
    target: Target,
    connect_timeout: float,
    host_key_algs: Sequence[str] | None = None,
    *,
    allow_private: bool = False,
) -> tuple[Session, Sequence[str]]:
    """Connect with the pinned host key; the host key algorithms that worked.

    Loopback and link-local targets are refused unless `allow_private`."""
    address = await allowed_address(target.host, target.port, allow_private=allow_private)
    try:
        keys = [asyncssh.import_private_key(target.private_key)] if target.private_key else None
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise DeliveryError(
            ErrorCode.INVALID_CONFIGURATION, "the private key cannot be read"
        ) from exc
    attempts: list[Sequence[str]] = [host_key_algs or PREFERRED_HOST_KEY_ALGS]
    probing = False
    while attempts:
        algs = attempts.pop(0)
        client = _PinnedHostKeyClient(target.fingerprint)
        try:
            connection = await _connect(target, address, keys, algs, client, connect_timeout)
        except asyncssh.HostKeyNotVerifiable:
            if probing or host_key_algs:
                continue
            probing = True
            attempts = [f for f in HOST_KEY_FAMILIES if client.seen_algorithm not in f]
            continue
        except asyncssh.PermissionDenied:
            raise
        except (asyncssh.Error, OSError):
            if probing:  # the server has no host key of this type
                continue
            raise
        try:
            sftp = await asyncio.wait_for(connection.start_sftp_client(), connect_timeout)
        except BaseException:
            connection.close()
            raise
        return Session(connection, sftp), algs
    raise asyncssh.HostKeyNotVerifiable("no host key matches the pin")


async def _connect(
    target: Target,
    address: str,
    keys: list[asyncssh.SSHKey] | None,
    algs: Sequence[str],
    client: _PinnedHostKeyClient,
    connect_timeout: float,
) -> asyncssh.SSHClientConnection:
    connection, _ = await asyncssh.create_connection(
        lambda: client,
        address,
        target.port,
        username=target.username,
        known_hosts=([], [], []),  # trust nothing but the pin checked by the client
        server_host_key_algs=list(algs),
        encryption_algs=list(PREFERRED_CIPHERS),
        client_keys=keys,
        password=target.password,
        agent_path=None,
        config=[],
        connect_timeout=connect_timeout,
        login_timeout=connect_timeout,
        keepalive_interval=15,
        preferred_auth="publickey,password" if keys else "password",
    )
    return connection


class _TargetPool:
    def __init__(
        self,
        target: Target,
        size: int,
        per_session: int,
        timeout: float,
        allow_private: bool = False,
    ) -> None:
        self.target = target
        self.allow_private = allow_private
        self.size = size
        self.per_session = per_session
        self.timeout = timeout
        self.sessions: list[Session] = []
        self.host_key_algs: Sequence[str] | None = None
        self.last_used = time.monotonic()
        self._lock = asyncio.Lock()

    def _pick(self) -> Session | None:
        live = [s for s in self.sessions if not s.broken and not s.connection.is_closed()]
        self.sessions = live
        if not live:
            return None
        best = min(live, key=lambda s: s.in_flight)
        if best.in_flight >= self.per_session and len(live) < self.size:
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
            try:
                session, algs = await open_session(
                    self.target,
                    self.timeout,
                    self.host_key_algs,
                    allow_private=self.allow_private,
                )
            except Exception as exc:
                raise classify(exc) from exc
            self.host_key_algs = algs
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
        self._timeout = connect_timeout
        self.allow_private_targets = allow_private_targets
        self._size = sessions_per_target
        self._per_session = uploads_per_session
        self._pools: dict[Target, _TargetPool] = {}
        self._idle_seconds = idle_seconds

    @contextlib.asynccontextmanager
    async def session(self, target: Target) -> AsyncIterator[Session]:
        self._close_idle(target)
        pool = self._pools.get(target)
        if pool is None:
            pool = self._pools[target] = _TargetPool(
                target, self._size, self._per_session, self._timeout, self.allow_private_targets
            )
        pool.last_used = time.monotonic()
        session = await pool.acquire()
        session.in_flight += 1
        try:
            yield session
        except (asyncssh.Error, OSError, EOFError) as exc:
            if _breaks_session(exc):
                session.close()  # the connection is unusable; the next upload reconnects
            raise
        finally:
            session.in_flight -= 1

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


def _breaks_session(exc: BaseException) -> bool:
    if isinstance(exc, asyncssh.SFTPConnectionLost):
        return True
    return not isinstance(exc, asyncssh.SFTPError)


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
            return await self._deliver(target, connection.sftp.remote_directory, upload)
        except _StaleSession:
            # A pooled session died while idle (server restart, idle timeout): that is
            # not this export's fault, so try once more on a fresh session.
            try:
                return await self._deliver(target, connection.sftp.remote_directory, upload)
            except _StaleSession as stale:
                raise stale.error from None

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
        """Connect afresh and report each step in words."""
        checks: list[Check] = []
        try:
            target = Target.of(connection)
            assert connection.sftp is not None
            directory = connection.sftp.remote_directory
            try:
                await allowed_address(
                    target.host, target.port, allow_private=self._pool.allow_private_targets
                )
            except DeliveryError as refused:
                if refused.code is not ErrorCode.INVALID_CONFIGURATION:
                    raise
                checks.append(Check("target_allowed", False, refused.message))
                return ConnectionReport(False, checks, str(refused.code), refused.message)
            checks.append(Check("target_allowed", True, "the host is not a refused address"))
            session, _ = await open_session(
                target, self._timeout, allow_private=self._pool.allow_private_targets
            )
        except Exception as exc:
            error = classify(exc)
            checks.extend(_connect_checks(error.code))
            return ConnectionReport(False, checks, str(error.code), error.message)
        checks.extend(_connect_checks(None))
        try:
            try:
                await _check_directory(session.sftp, directory)
            except Exception as exc:
                error = classify(exc, context="directory")
                checks.append(Check("remote_directory", False, error.message))
                return ConnectionReport(False, checks, str(error.code), error.message)
            checks.append(Check("remote_directory", True, f"{directory} exists"))
            probe = posixpath.join(directory, f".orderflow-probe-{uuid.uuid4().hex}")
            try:
                async with session.sftp.open(probe, "wb") as handle:
                    await handle.write(b"probe")
                await session.sftp.remove(probe)
            except Exception as exc:
                error = classify(exc, context="upload")
                checks.append(Check("remote_directory_writable", False, error.message))
                return ConnectionReport(False, checks, str(error.code), error.message)
            checks.append(Check("remote_directory_writable", True, f"{directory} is writable"))
            return ConnectionReport(True, checks, None, "the dropzone is ready")
        finally:
            session.close()


_CONNECT_STEPS = (
    (
        "tcp_connect",
        "the server answers",
        {
            ErrorCode.CONNECTION_REFUSED,
            ErrorCode.CONNECTION_TIMEOUT,
            ErrorCode.HOST_UNREACHABLE,
            ErrorCode.CONNECTION_LOST,
        },
    ),
    ("host_key", "the host key matches the pinned fingerprint", {ErrorCode.HOST_KEY_MISMATCH}),
    (
        "authentication",
        "the credentials are accepted",
        {ErrorCode.AUTH_FAILED, ErrorCode.INVALID_CONFIGURATION},
    ),
    (
        "sftp_session",
        "an SFTP session opens",
        {ErrorCode.REMOTE_IO_ERROR, ErrorCode.INTERNAL_ERROR},
    ),
)


def _connect_checks(failed: ErrorCode | None) -> list[Check]:
    checks = []
    for name, ok_message, codes in _CONNECT_STEPS:
        if failed in codes:
            checks.append(Check(name, False, f"failed: {failed}"))
            break
        checks.append(Check(name, True, ok_message))
    return checks


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
