"""Domain errors: values the entrypoints map to HTTP status codes in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every business-rule violation; `detail` is safe to show to a user."""

    detail: str = "Request refused"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.detail)
        if detail is not None:
            self.detail = detail


class DraftNotFound(DomainError):
    detail = "Draft order not found"


class InvalidTransition(DomainError):
    """The draft's status does not allow the requested step."""


class DraftNotReady(InvalidTransition):
    detail = "Draft must be READY"


class DraftNotApproved(InvalidTransition):
    detail = "Draft must be APPROVED"


class DraftNotInError(InvalidTransition):
    detail = "Draft must be in ERROR"


class DraftNotEditable(InvalidTransition):
    detail = "Draft can only be changed while NEW, NEEDS_REVIEW or READY"


class DraftNotValidatable(InvalidTransition):
    detail = "Draft can only be validated while NEW, NEEDS_REVIEW or READY"


class FourEyesRefused(DomainError):
    """The org's four-eyes rule: the creator or last editor may not approve."""

    detail = (
        "Four-eyes rule: you created or last edited this draft, so another user with "
        "the approver role must approve it"
    )


class PreconditionFailed(DomainError):
    """If-Match / If-Unmodified-Since do not hold for the draft as it is now."""

    detail = "Draft has changed since the given ETag or date; GET it again and retry"


class NoActiveConnector(DomainError):
    detail = "No active ERP connector"


class ConcurrentModification(DomainError):
    detail = "Draft was modified by another request; reload and try again"


class IdempotencyKeyInvalid(DomainError):
    detail = "Idempotency-Key must be 1-255 characters of letters, digits and -_.:~+/="


class IdempotencyKeyInFlight(DomainError):
    detail = "A request with this Idempotency-Key is still being processed"


class IdempotencyKeyMismatch(DomainError):
    detail = "Idempotency-Key was already used for a different request"
