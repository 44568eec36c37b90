"""Domain errors → HTTP status codes, in one place."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from draft_api.domain import errors
from draft_api.entrypoints.http.schemas import ErrorOut, RequestErrorOut

STATUS_OF: list[tuple[type[errors.DomainError], int]] = [
    (errors.DraftNotFound, 404),
    (errors.InvalidTransition, 409),
    (errors.ConcurrentModification, 409),
    (errors.IdempotencyKeyInFlight, 409),
    (errors.NoActiveConnector, 400),
    (errors.IdempotencyKeyInvalid, 400),
    (errors.IdempotencyKeyMismatch, 422),
]


def status_of(exc: errors.DomainError) -> int:
    return next((code for kind, code in STATUS_OF if isinstance(exc, kind)), 400)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DomainError)
    return JSONResponse({"detail": exc.detail}, status_code=status_of(exc))


def install_domain_errors(app: FastAPI) -> None:
    app.add_exception_handler(errors.DomainError, _domain_error)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the error codes a route can answer."""
    described = {
        400: "Bad request (e.g. malformed Idempotency-Key, no active ERP connector)",
        401: "Missing or invalid bearer token",
        403: "The token lacks a required role",
        404: "No such draft in the caller's organisation",
        409: "The draft's status does not allow this, or a concurrent request won",
        413: "Body too large",
        415: "Body is not application/json",
        422: "Invalid input (or Idempotency-Key reused for a different request)",
    }
    out: dict[int | str, dict[str, Any]] = {}
    for code in (401, 403, *codes):
        model = RequestErrorOut if code == 422 else ErrorOut
        out[code] = {"model": model, "description": described[code]}
    return out
