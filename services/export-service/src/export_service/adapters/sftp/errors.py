"""SFTP failures as delivery errors: which network, SSH or SFTP failure means what."""

from __future__ import annotations

import socket

import asyncssh

from export_service.domain.errors import DeliveryError, ErrorCode

KEY_UNREADABLE = "the private key cannot be read"


def classify(exc: BaseException, *, context: str = "connect") -> DeliveryError:
    """Map a network, SSH or SFTP failure to a precise, transient-or-permanent code.

    `context` is the step that failed: "connect", "directory" or "upload" (a missing
    file while checking or writing the directory means the directory is missing)."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return DeliveryError(
            ErrorCode.HOST_KEY_MISMATCH, "the server's host key does not match the pinned one"
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return DeliveryError(ErrorCode.AUTH_FAILED, "the server refused the credentials")
    if isinstance(exc, asyncssh.KeyImportError):
        return DeliveryError(ErrorCode.INVALID_CONFIGURATION, KEY_UNREADABLE)
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


def breaks_session(exc: BaseException) -> bool:
    """Whether a failure while using a session leaves it unusable (an SFTP status
    error such as "no such file" does not; a lost channel or socket does)."""
    if isinstance(exc, asyncssh.SFTPConnectionLost):
        return True
    return not isinstance(exc, asyncssh.SFTPError)
