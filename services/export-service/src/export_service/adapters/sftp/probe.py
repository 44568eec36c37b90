"""Reaching an SFTP dropzone: the target, the address check, the pinned host key.

- The server's host key must have the pinned SHA256 fingerprint; nothing else is
  trusted (`known_hosts` is an empty trust list plus `validate_host_public_key`).
  asyncssh prefers RSA host keys, so when the server shows a key of another type
  than the pinned one, the other key types are tried once (host-key probing) and the
  one that matches is remembered for the target.
- `Progress` records each step of a connection as it happens (asyncssh's client
  callbacks), so the connection test reports what was really reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncssh

from export_service.adapters.sftp.errors import KEY_UNREADABLE
from export_service.domain.connection import ErpConnection
from export_service.domain.errors import DeliveryError, ErrorCode

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

PRIVATE_TARGET_REFUSED = (
    "the SFTP host is a loopback or link-local address, refused outside development "
    "(EXPORT_SFTP_ALLOW_PRIVATE_TARGETS allows it)"
)


def _normalise_fingerprint(value: str) -> str:
    return value.strip().rstrip("=")


def fingerprints_match(seen: str, pinned: str) -> bool:
    return hmac.compare_digest(_normalise_fingerprint(seen), _normalise_fingerprint(pinned))


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


#: The steps of opening a session, in the order they happen.
STEPS: tuple[str, ...] = (
    "private_key",
    "tcp_connect",
    "host_key",
    "authentication",
    "sftp_session",
)


@dataclass
class Progress:
    """The steps of opening a session that really happened (across probing attempts):
    private_key (read), tcp_connect, host_key (matched), authentication, sftp_session."""

    reached: set[str] = field(default_factory=set)

    def done(self, step: str) -> None:
        self.reached.add(step)


class _PinnedHostKeyClient(asyncssh.SSHClient):
    def __init__(self, fingerprint: str, progress: Progress) -> None:
        self._fingerprint = fingerprint
        self._progress = progress
        self.seen_algorithm: str | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._progress.done("tcp_connect")

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.seen_algorithm = key.get_algorithm()
        matches = fingerprints_match(key.get_fingerprint("sha256"), self._fingerprint)
        if matches:
            self._progress.done("host_key")
        return matches

    def auth_completed(self) -> None:
        self._progress.done("authentication")


def _import_keys(target: Target) -> list[asyncssh.SSHKey] | None:
    if not target.private_key:
        return None
    try:
        return [asyncssh.import_private_key(target.private_key)]
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise DeliveryError(ErrorCode.INVALID_CONFIGURATION, KEY_UNREADABLE) from exc


async def open_ssh(
    target: Target,
    connect_timeout: float,
    host_key_algs: Sequence[str] | None = None,
    *,
    allow_private: bool = False,
    progress: Progress | None = None,
) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient, Sequence[str]]:
    """Connect with the pinned host key and start SFTP: the connection, its SFTP
    client and the host key algorithms that worked.

    Loopback and link-local targets are refused unless `allow_private`. Each step
    reached is recorded in `progress`."""
    progress = progress if progress is not None else Progress()
    address = await allowed_address(target.host, target.port, allow_private=allow_private)
    keys = _import_keys(target)
    progress.done("private_key")
    attempts: list[Sequence[str]] = [host_key_algs or PREFERRED_HOST_KEY_ALGS]
    probing = False
    while attempts:
        algs = attempts.pop(0)
        client = _PinnedHostKeyClient(target.fingerprint, progress)
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
        progress.done("sftp_session")
        return connection, sftp, algs
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


def close_quietly(connection: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient) -> None:
    with contextlib.suppress(Exception):
        sftp.exit()
    connection.close()
