"""FastAPI building blocks every service uses.

- `install_error_handlers(app)`: JSON bodies with `detail` for every error; 422 for
  request validation (with `detail` a list of pydantic errors, no input echoed for
  secrets).
- `UnhandledErrorMiddleware`: an unexpected exception → 500
  `{"detail": "Internal error", "request_id": ...}` logged with that request id (must
  never happen, but never leaks internals) and the keep-alive connection stays usable.
  Starlette's own `ServerErrorMiddleware` re-raises after answering, and uvicorn then
  closes the connection; a proxy that pooled it (nginx `keepalive`) fails the next
  request it sends there.
- `HostileTextMiddleware` + `reject_hostile_parameters`: NUL characters and lone
  surrogates (which Postgres and UTF-8 cannot store) are a 422 naming the field, in
  JSON bodies (any string, at any depth), query and path parameters; a JSON body that
  is not UTF-8 is a 400.
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
- `PatchIn`: base of PATCH bodies; a field left out stays as it is, an explicit `null`
  is a 422 naming the field unless the model lists it in `nullable_fields` (and the
  published schema says which fields take null).
- `ErrorOut`, `RequestErrorOut` and `error_responses(*codes)`: the error bodies above
  as OpenAPI models, for a route's `responses=` (so the published schema declares
  every status a route can answer and the body it then carries).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, field_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError
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


def _log_unexpected(scope: Scope, exc: BaseException) -> str:
    request_id = scope.get(_REQUEST_ID_KEY) or str(uuid.uuid4())
    _log.error(
        "unhandled error on %s %s (request id %s)",
        scope.get("method"),
        scope.get("path"),
        request_id,
        exc_info=exc,
    )
    return str(request_id)


def _internal_error_body(request_id: str) -> dict[str, Any]:
    return {"detail": "Internal error", "request_id": request_id}


async def _unexpected_exception(request: Request, exc: Exception) -> Response:
    """Last resort (Starlette's ServerErrorMiddleware) for an error outside the app's
    own middleware; `UnhandledErrorMiddleware` answers everything raised inside it."""
    request_id = _log_unexpected(request.scope, exc)
    return JSONResponse(
        _internal_error_body(request_id), status_code=500, headers={"X-Request-ID": request_id}
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_exception)
    app.add_exception_handler(Exception, _unexpected_exception)


class UnhandledErrorMiddleware:
    """An exception no handler took becomes a JSON 500, and the connection stays open.

    The exception is not re-raised (Starlette's ServerErrorMiddleware would, and then
    uvicorn closes the keep-alive connection under a proxy that may reuse it). After the
    response has started there is nothing sane to send: then it is re-raised.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            request_id = _log_unexpected(scope, exc)
            await _send_json(send, 500, _internal_error_body(request_id))


class ErrorOut(BaseModel):
    """The body of every error response except request validation."""

    detail: str = Field(description="What went wrong, for a human.")


class InternalErrorOut(ErrorOut):
    """A 500: a bug; the request id finds its log lines."""

    request_id: str


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


class PatchIn(BaseModel):
    """A PATCH body: only the fields sent change; `null` only where it means something.

    Declare every field `X | None = None` (so it can be left out) and list in
    `nullable_fields` those where an explicit `null` has a meaning (e.g. "clear it");
    for every other field `null` is refused with 422 at that field.
    """

    model_config = ConfigDict(extra="forbid")
    nullable_fields: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _null_only_where_it_means_something(cls, value: Any, info: Any) -> Any:
        if value is None and info.field_name not in cls.nullable_fields:
            raise PydanticCustomError(
                "null_not_allowed",
                "{field} cannot be null: leave it out to keep the current value",
                {"field": info.field_name},
            )
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        resolved = handler.resolve_ref_schema(schema)
        for name, prop in resolved.get("properties", {}).items():
            if name in cls.nullable_fields or "anyOf" not in prop:
                continue
            rest = [branch for branch in prop["anyOf"] if branch.get("type") != "null"]
            if len(rest) == 1:
                del prop["anyOf"]
                prop.update(rest[0])
            else:
                prop["anyOf"] = rest
            prop.pop("default", None)
        return schema


_ERROR_DESCRIPTIONS = {
    400: "Bad request (e.g. an invalid Content-Length header, a body that is not UTF-8)",
    401: "Missing or invalid bearer token",
    403: "The token lacks a required role",
    404: "Not found in the caller's organisation",
    409: "Conflict with the current state or a concurrent change",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid input (also: a NUL character or a lone surrogate in any string)",
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


# --- hostile text ---------------------------------------------------------------------

#: cheap look at raw UTF-8 JSON: a `\u0000` or surrogate escape (a pair is fine, but
#: then json.loads decides); raw NUL bytes are never UTF-8 JSON text
_SUSPECT_JSON = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_NOT_UTF8 = "Request body must be JSON encoded as UTF-8"


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored or encoded as UTF-8 text, or None when it is fine."""
    if "\x00" in value:
        return "must not contain NUL characters (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain lone surrogates"
    return None


def _problem(loc: list[str | int], kind: str, what: str, why: str) -> dict[str, Any]:
    return {"type": kind, "loc": loc, "msg": f"{what} {why}"}


def _json_text_problems(document: Any) -> list[dict[str, Any]]:
    """Every string (values and keys) at any depth with NUL or a lone surrogate."""
    found: list[dict[str, Any]] = []
    stack: list[tuple[list[str | int], Any]] = [(["body"], document)]
    while stack and len(found) < 20:
        loc, value = stack.pop()
        if isinstance(value, str):
            why = text_problem(value)
            if why:
                found.append(_problem(loc, "string_unacceptable_character", "String", why))
        elif isinstance(value, dict):
            for key, item in value.items():
                why = text_problem(key)
                if why:
                    found.append(_problem(loc, "key_unacceptable_character", "A key", why))
                    continue
                stack.append(([*loc, key], item))
        elif isinstance(value, list):
            stack.extend(([*loc, index], item) for index, item in enumerate(value))
    found.sort(key=lambda problem: [str(part) for part in problem["loc"]])
    return found


def _is_json_body(scope: Scope) -> bool:
    """What FastAPI would parse as JSON: no Content-Type, `application/json`, `+json`."""
    content_type = _header(scope, b"content-type")
    if content_type is None:
        return True
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class HostileTextMiddleware:
    """Looks at JSON request bodies before the app parses them.

    Not UTF-8 (or raw NUL bytes, e.g. UTF-16): 400. A string holding NUL or a lone
    surrogate, anywhere in the document: 422 with the `loc` of each. The body is
    decoded and parsed here only when a cheap byte scan finds a suspect escape.
    Runs inside the body size limit, so it never buffers more than that.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if not _is_json_body(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = _body_problem(body)
        if problem is not None:
            status, detail = problem
            await _send_json(send, status, {"detail": detail})
            return
        await self.app(scope, _replay([body], None, receive), send)


def _body_problem(body: bytes) -> tuple[int, Any] | None:
    if not body:
        return None
    if b"\x00" in body:
        return 400, _NOT_UTF8
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return 400, _NOT_UTF8
    if not _SUSPECT_JSON.search(body):
        return None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None  # not JSON: the app answers that as it always did
    problems = _json_text_problems(document)
    return (422, problems) if problems else None


def _replay(bodies: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    """A `receive` that hands out the buffered body once, then the real channel."""
    queue: list[Message] = [
        {"type": "http.request", "body": body, "more_body": False} for body in bodies
    ]
    if pending is not None:
        queue.append(pending)

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed


async def reject_hostile_parameters(request: Request) -> None:
    """App-wide dependency: NUL or a lone surrogate in a path or query parameter → 422."""
    problems = [
        _problem(["path", name], "string_unacceptable_character", "Path parameter", why)
        for name, value in request.path_params.items()
        if isinstance(value, str) and (why := text_problem(value))
    ]
    problems += [
        _problem(["query", name], "string_unacceptable_character", "Query parameter", why)
        for name, value in request.query_params.multi_items()
        if (why := text_problem(value) or text_problem(name))
    ]
    if problems:
        raise RequestValidationError(problems)


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

    Add the service's own routers to the result (they inherit the app-wide check of
    path and query parameters). `checks=None` reads `app.state.health_checks` (set it
    in the lifespan).
    """
    dependencies = [Depends(reject_hostile_parameters), *fastapi_kwargs.pop("dependencies", [])]
    app = FastAPI(
        title=title, version=version, lifespan=lifespan, dependencies=dependencies, **fastapi_kwargs
    )
    install_error_handlers(app)
    # outermost last: request id > metrics > unhandled errors > body limit > hostile text
    app.add_middleware(HostileTextMiddleware)
    body_size_limit(app, max_body_bytes)
    app.add_middleware(UnhandledErrorMiddleware)
    install_http_metrics(app, service or title)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health_router(checks))
    app.include_router(metrics_router())
    if verifier is not None:
        install_auth(app, verifier)
    return app
