"""Domain errors → HTTP status codes, in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from orderflow_shared.web import problem, problem_response_doc
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from draft_api.domain import errors

_log = logging.getLogger(__name__)

STATUS_OF: list[tuple[type[errors.DomainError], int]] = [
    (errors.DraftNotFound, 404),
    (errors.FourEyesRefused, 403),
    (errors.InvalidTransition, 409),
    (errors.ConcurrentModification, 409),
    (errors.PreconditionFailed, 412),
    (errors.IdempotencyKeyInFlight, 409),
    (errors.NoActiveConnector, 400),
    (errors.IdempotencyKeyInvalid, 400),
    (errors.IdempotencyKeyMismatch, 422),
]


def status_of(exc: errors.DomainError) -> int:
    return next((code for kind, code in STATUS_OF if isinstance(exc, kind)), 400)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DomainError)
    return problem(request, status_of(exc), exc.detail)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    _log.warning("database unavailable: %s", type(exc).__name__)
    return problem(
        request,
        503,
        "Database busy or unavailable, try again shortly",
        headers={"Retry-After": "2"},
    )


def install_domain_errors(app: FastAPI) -> None:
    app.add_exception_handler(errors.DomainError, _domain_error)
    # A lost connection, an exhausted pool or a lock wait past `lock_timeout` is
    # overload or an outage, not a bug: 503 with Retry-After, never 500.
    for kind in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(kind, _database_unavailable)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the error codes a route can answer."""
    described = {
        400: "Bad request: a body that is not UTF-8 JSON, a bad Content-Length, a malformed "
        "Idempotency-Key, no active ERP connector",
        401: "Missing or invalid bearer token",
        403: "The token lacks a required role (approve: or the org's four-eyes rule "
        "keeps the draft's creator or last editor from approving it)",
        404: "No such draft in the caller's organisation",
        409: "The draft's status does not allow this, or a concurrent request won",
        412: "If-Match / If-Unmodified-Since: the draft changed (nothing was done)",
        413: "Body too large",
        415: "Body is not application/json",
        422: "Invalid input (or Idempotency-Key reused for a different request)",
        428: "If-Match required (the server runs with REQUIRE_PRECONDITIONS)",
        503: "Database busy or unavailable (retry after Retry-After seconds)",
    }
    out: dict[int | str, dict[str, Any]] = {}
    for code in dict.fromkeys((400, 401, 403, *codes, 503)):
        out[code] = problem_response_doc(code, described[code])
    return out
