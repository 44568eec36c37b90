"""Every domain error has one HTTP status, decided in one place."""

from __future__ import annotations

import pytest
from draft_api.domain import errors
from draft_api.entrypoints.http.errors import STATUS_OF, status_of


@pytest.mark.parametrize(
    ("error", "status", "detail"),
    [
        (errors.DraftNotFound(), 404, "Draft order not found"),
        (errors.DraftNotReady(), 409, "Draft must be READY"),
        (errors.DraftNotApproved(), 409, "Draft must be APPROVED"),
        (errors.DraftNotInError(), 409, "Draft must be in ERROR"),
        (errors.DraftNotEditable(), 409, None),
        (errors.ConcurrentModification(), 409, None),
        (errors.IdempotencyKeyInFlight(), 409, None),
        (errors.NoActiveConnector(), 400, "No active ERP connector"),
        (errors.IdempotencyKeyInvalid(), 400, None),
        (errors.IdempotencyKeyMismatch(), 422, None),
    ],
)
def test_domain_errors_map_to_their_status(
    error: errors.DomainError, status: int, detail: str | None
) -> None:
    assert status_of(error) == status
    if detail is not None:
        assert error.detail == detail == str(error)


def test_every_domain_error_class_is_mapped_explicitly() -> None:
    def leaves(cls: type[errors.DomainError]) -> set[type[errors.DomainError]]:
        subs = set(cls.__subclasses__())
        return subs.union(*(leaves(s) for s in subs)) if subs else set()

    for cls in leaves(errors.DomainError):
        assert any(issubclass(cls, kind) for kind, _ in STATUS_OF), cls
