"""SFTP failures as delivery errors: which network, SSH or SFTP failure means what."""

from __future__ import annotations

import socket

import asyncssh

from export_service.domain.errors import DeliveryError, ErrorCode

KEY_UNREADABLE = "the private key cannot be read"


#: Failures whose code and wording do not depend on the step; the generic SFTP, SSH
#: and network errors they specialise are matched after them, in `classify`.
_BY_TYPE: tuple[tuple[type[BaseException], ErrorCode, str], ...] = (
    (
        asyncssh.HostKeyNotVerifiable,
        ErrorCode.HOST_KEY_MISMATCH,
        "the server's host key does not match the pinned one",
    ),
    (asyncssh.PermissionDenied, ErrorCode.AUTH_FAILED, "the server refused the credentials"),
    (asyncssh.KeyImportError, ErrorCode.INVALID_CONFIGURATION, KEY_UNREADABLE),
    (
        asyncssh.SFTPPermissionDenied,
        ErrorCode.REMOTE_PERMISSION_DENIED,
        "the server denied writing in the remote directory",
    ),
    (asyncssh.SFTPConnectionLost, ErrorCode.CONNECTION_LOST, "SSH connection lost"),
    (ConnectionRefusedError, ErrorCode.CONNECTION_REFUSED, "the server refused the connection"),
    (TimeoutError, ErrorCode.CONNECTION_TIMEOUT, "the server did not answer in time"),
    (socket.gaierror, ErrorCode.HOST_UNREACHABLE, "the host name cannot be resolved"),
)


def classify(exc: BaseException, *, context: str = "connect") -> DeliveryError:
    """Map a network, SSH or SFTP failure to a precise, transient-or-permanent code.

    `context` is the step that failed: "connect", "directory" or "upload" (a missing
    file while checking or writing the directory means the directory is missing)."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, asyncssh.SFTPNoSuchFile):
        if context in ("directory", "upload"):
            return DeliveryError(
                ErrorCode.REMOTE_DIR_MISSING, "the remote directory does not exist"
            )
        return DeliveryError(ErrorCode.REMOTE_IO_ERROR, f"no such file: {exc.reason}")
    for kind, code, message in _BY_TYPE:
        if isinstance(exc, kind):
            return DeliveryError(code, message)
    if isinstance(exc, asyncssh.SFTPError):
        return DeliveryError(ErrorCode.REMOTE_IO_ERROR, f"SFTP error: {exc.reason}")
    if isinstance(exc, asyncssh.DisconnectError | asyncssh.ChannelOpenError):
        return DeliveryError(ErrorCode.CONNECTION_LOST, f"SSH connection lost: {exc.reason}")
    if isinstance(exc, ConnectionError | OSError | EOFError | BrokenPipeError):
        return DeliveryError(ErrorCode.CONNECTION_LOST, f"network error: {type(exc).__name__}")
    return DeliveryError(ErrorCode.INTERNAL_ERROR, f"unexpected {type(exc).__name__}")


def breaks_session(exc: BaseException) -> bool:
    """Whether a failure while using a session leaves it unusable (an SFTP status
    error such as "no such file" does not; a lost channel or socket does)."""
    if isinstance(exc, asyncssh.SFTPConnectionLost):
        return True
    return not isinstance(exc, asyncssh.SFTPError)
