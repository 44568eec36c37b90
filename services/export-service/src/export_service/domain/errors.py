"""Errors as values: delivery failures with precise codes, and use-case errors."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why a delivery attempt failed. Each code is transient (retry) or permanent."""

    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_TIMEOUT = "connection_timeout"
    CONNECTION_LOST = "connection_lost"
    HOST_UNREACHABLE = "host_unreachable"
    REMOTE_IO_ERROR = "remote_io_error"
    LOCAL_IO_ERROR = "local_io_error"
    AUTH_FAILED = "auth_failed"
    HOST_KEY_MISMATCH = "host_key_mismatch"
    REMOTE_DIR_MISSING = "remote_dir_missing"
    REMOTE_PERMISSION_DENIED = "remote_permission_denied"
    NO_ACTIVE_CONNECTION = "no_active_connection"
    INVALID_CONFIGURATION = "invalid_configuration"
    RENDER_FAILED = "render_failed"
    INTERNAL_ERROR = "internal_error"
    #: the export's delivery deadline passed before any attempt could run
    DEADLINE_PASSED = "deadline_passed"

    @property
    def is_transient(self) -> bool:
        return self in _TRANSIENT


_TRANSIENT = frozenset(
    {
        ErrorCode.CONNECTION_REFUSED,
        ErrorCode.CONNECTION_TIMEOUT,
        ErrorCode.CONNECTION_LOST,
        ErrorCode.HOST_UNREACHABLE,
        ErrorCode.REMOTE_IO_ERROR,
        ErrorCode.LOCAL_IO_ERROR,
        ErrorCode.INTERNAL_ERROR,
    }
)


class DeliveryError(Exception):
    """A delivery attempt failed; `code` decides between retry and giving up."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def is_transient(self) -> bool:
        return self.code.is_transient

    def as_json(self) -> dict[str, object]:
        return {
            "error": self.message,
            "code": str(self.code),
            "transient": self.is_transient,
        }


class DomainError(Exception):
    """Base of errors a use case reports to its caller (mapped to HTTP in one place)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class PreconditionFailed(DomainError):
    """If-Match / If-Unmodified-Since do not hold for the connection as it is now."""

    def __init__(self) -> None:
        super().__init__(
            "Connection has changed since the given ETag or date; GET it again and retry"
        )


class ConnectionNotFound(DomainError):
    def __init__(self) -> None:
        super().__init__("ERP connection not found")


class InvalidConnection(DomainError):
    """A connection's configuration breaks a rule (422)."""


class InvalidFileNameTemplate(InvalidConnection):
    pass


class TargetNotAllowed(InvalidConnection):
    """A well-formed target this org may not use (a local directory outside its root, or
    local dropzones disabled): 403, since no body the published schema allows could tell."""
