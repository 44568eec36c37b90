"""FastAPI building blocks every service uses.

- `install_error_handlers(app)`: JSON bodies with `detail` for every error; 422 for
  request validation (with `detail` a list of pydantic errors, no input echoed for
  secrets); unexpected exceptions → 500 `{"detail": "Internal error"}` logged with a
  request id (must never happen, but never leaks internals).
- `body_size_limit(app, max_bytes=1_048_576)`: 413 with `detail` for larger bodies
  (pure ASGI middleware: checks Content-Length and counts streamed bodies).
- `health_router(checks: dict[str, Callable[[], Awaitable[bool]]]) -> APIRouter` with
  `GET /livez` (200 `{"status": "ok"}`, no dependency checks) and `GET /readyz`
  (200 or 503 with `{"status": ..., "checks": {name: "ok"|"fail"}}`). With
  `checks=None` the router reads `app.state.health_checks` at request time, so the
  lifespan can fill it once the engine and clients exist.
- `metrics_router() -> APIRouter`: `GET /metrics` (prometheus_client exposition), plus
  `install_http_metrics(app, service)` middleware: request count and latency histogram
  by route template and status.
- `RequestIdMiddleware`: every response carries `X-Request-ID` (the caller's, when it
  is a sane token, else a new UUID); the id is bound into the structlog context of the
  request so every log line of it can be found.
- `make_service_app(title, version, lifespan, checks, ...)`: a FastAPI app with all of
  the above installed (and auth, when a verifier is given).
- `ErrorOut`, `RequestErrorOut` and `error_responses(*codes)`: the error bodies above
  as OpenAPI models, for a route's `responses=` (so the published schema declares
  every status a route can answer and the body it then carries).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orderflow_shared.auth import JwtVerifier, install_auth

_log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[bool]]

DEFAULT_MAX_BODY_BYTES = 1_048_576

HTTP_REQUESTS = Counter(
    "orderflow_http_requests_total",
    "HTTP requests by route template and status.",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "orderflow_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


# --- errors ------------------------------------------------------------------------


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic errors without the offending input (it may hold a secret)."""
    errors = []
    for error in exc.errors():
        item: dict[str, Any] = {
            "type": error.get("type"),
            "loc": list(error.get("loc", ())),
            "msg": error.get("msg"),
        }
        ctx = error.get("ctx")
        if ctx:
            item["ctx"] = {k: str(v) for k, v in ctx.items()}
        errors.append(item)
    return errors


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 204 or exc.status_code < 200:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse(
        {"detail": jsonable_encoder(exc.detail)},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _validation_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _validation_errors(exc)}, status_code=422)


async def _unexpected_exception(request: Request, exc: Exception) -> Response:
    request_id = request.scope.get(_REQUEST_ID_KEY) or str(uuid.uuid4())
    _log.error(
        "unhandled error on %s %s (request id %s)",
        request.method,
        request.url.path,
        request_id,
        exc_info=exc,
    )
    return JSONResponse(
        {"detail": "Internal error"}, status_code=500, headers={"X-Request-ID": request_id}
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_exception)
    app.add_exception_handler(Exception, _unexpected_exception)


class ErrorOut(BaseModel):
    """The body of every error response except request validation."""

    detail: str = Field(description="What went wrong, for a human.")


class ValidationIssueOut(BaseModel):
    """One request validation problem (the offending input is never echoed)."""

    type: str | None = Field(description="Pydantic's error type, e.g. `missing`.")
    loc: list[str | int] = Field(
        description="Where: `body`/`query`/`path`/... then the field path."
    )
    msg: str
    ctx: dict[str, str] | None = Field(default=None, description="The constraint's parameters.")


class RequestErrorOut(BaseModel):
    """A 422: invalid input, as a list of problems or one message."""

    detail: str | list[ValidationIssueOut]


_ERROR_DESCRIPTIONS = {
    400: "Bad request (e.g. an invalid Content-Length header)",
    401: "Missing or invalid bearer token",
    403: "The token lacks a required role",
    404: "Not found in the caller's organisation",
    409: "Conflict with the current state or a concurrent change",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid input",
    503: "Temporarily unavailable, try again shortly",
}


def error_responses(
    *codes: int, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` declaring the given error codes with their body models.

    422 is `RequestErrorOut` (its `detail` is a list of problems or a string), every
    other code `ErrorOut`. `descriptions` overrides the generic wording per code.
    """
    wording = {**_ERROR_DESCRIPTIONS, **(descriptions or {})}
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        model = RequestErrorOut if code == 422 else ErrorOut
        out[code] = {"model": model, "description": wording.get(code, "Error")}
    return out


# --- request id ---------------------------------------------------------------------

_REQUEST_ID_KEY = "orderflow.request_id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = _header(scope, b"x-request-id")
        request_id = offered if offered and _SANE_REQUEST_ID.match(offered) else str(uuid.uuid4())
        scope[_REQUEST_ID_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)


# --- body size ----------------------------------------------------------------------


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"Request body larger than {max_bytes} bytes")


class BodySizeLimitMiddleware:
    """Refuses bodies above `max_bytes` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _send_json(send, 400, {"detail": "Invalid Content-Length header"})
                return
            if length > self.max_bytes:
                await _send_json(send, 413, {"detail": BodyTooLarge(self.max_bytes).detail})
                return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _send_json(send, 413, {"detail": exc.detail})


def body_size_limit(app: FastAPI, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_bytes)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    response = JSONResponse(body, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


# --- health --------------------------------------------------------------------------


class ReadinessOut(BaseModel):
    """The body of `/readyz`, with 200 (all checks ok) and with 503."""

    status: str = Field(examples=["ok", "unavailable"])
    checks: dict[str, str] = Field(description='Each dependency: "ok" or "fail".')


async def _run_check(check: HealthCheck, limit: float) -> bool:
    try:
        async with asyncio.timeout(limit):
            return bool(await check())
    except Exception as exc:
        _log.warning("readiness check failed: %s", type(exc).__name__)
        return False


def health_router(
    checks: Mapping[str, HealthCheck] | None = None, *, timeout: float = 3.0
) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        responses={
            200: {"model": ReadinessOut, "description": "Every dependency answers"},
            503: {"model": ReadinessOut, "description": "A dependency does not answer"},
        },
    )
    async def readyz(request: Request) -> JSONResponse:
        current: Mapping[str, HealthCheck] = (
            checks if checks is not None else getattr(request.app.state, "health_checks", {})
        )
        names = list(current)
        results = await asyncio.gather(*(_run_check(current[n], timeout) for n in names))
        outcome = {name: "ok" if ok else "fail" for name, ok in zip(names, results, strict=True)}
        ready = all(results)
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": outcome},
            status_code=200 if ready else 503,
        )

    return router


# --- metrics -------------------------------------------------------------------------


def metrics_router() -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router


class HttpMetricsMiddleware:
    """Counts requests and observes latency, labelled by route template (not raw path)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        begin = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(self.service, method, template, str(status)).inc()
            HTTP_LATENCY.labels(self.service, method, template).observe(time.perf_counter() - begin)


def install_http_metrics(app: FastAPI, service: str) -> None:
    app.add_middleware(HttpMetricsMiddleware, service=service)


# --- the whole kit ----------------------------------------------------------------------


def make_service_app(
    title: str,
    version: str,
    lifespan: Any = None,
    checks: Mapping[str, HealthCheck] | None = None,
    *,
    service: str | None = None,
    verifier: JwtVerifier | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    **fastapi_kwargs: Any,
) -> FastAPI:
    """A FastAPI app with error handlers, body limit, HTTP metrics, health and metrics.

    Add the service's own routers to the result. `checks=None` reads
    `app.state.health_checks` (set it in the lifespan).
    """
    app = FastAPI(title=title, version=version, lifespan=lifespan, **fastapi_kwargs)
    install_error_handlers(app)
    body_size_limit(app, max_body_bytes)
    install_http_metrics(app, service or title)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health_router(checks))
    app.include_router(metrics_router())
    if verifier is not None:
        install_auth(app, verifier)
    return app
