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
  the above installed (and auth, when a verifier is given), traced with OpenTelemetry:
  when the process exports spans, `orderflow_shared.tracing.instrument_app` (a server
  span per request that continues the caller's `traceparent`); when not,
  `TraceContextMiddleware` only continues the caller's trace (its ids still reach the
  outbox and the log lines; nothing is recorded), at a fraction of the cost.
- `PatchIn`: base of PATCH bodies; a field left out stays as it is, an explicit `null`
  is a 422 naming the field unless the model lists it in `nullable_fields` (and the
  published schema says which fields take null).
- `ErrorOut`, `RequestErrorOut` and `error_responses(*codes)`: the error bodies above
  as OpenAPI models, for a route's `responses=` (so the published schema declares
  every status a route can answer and the body it then carries).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, field_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orderflow_shared import tracing
from orderflow_shared.auth import JwtVerifier, install_auth
from orderflow_shared.preconditions import (
    Preconditions,
    entity_tag,
    http_date,
    parse_http_date,
    parse_if_match,
)

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


PROBLEM_JSON = "application/problem+json"


#: RFC 9110's reason phrases where Python's differ
_PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}


def _title(status: int) -> str:
    if status in _PHRASES:
        return _PHRASES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    scope: Scope,
    status: int,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An RFC 9457 problem document: `type` (about:blank: the status says it all),
    `title` (the status phrase), `status`, `detail` (the human sentence), `instance`
    (the request path), `request_id`; `errors` for request validation."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _title(status),
        "status": status,
        "detail": detail,
        "instance": str(scope.get("root_path", "")) + str(scope.get("path", "/")),
        "request_id": str(scope.get(_REQUEST_ID_KEY) or ""),
    }
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    return body


def problem(
    request: Request,
    status: int,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """The response for an error: a problem document (`application/problem+json`)."""
    return JSONResponse(
        problem_body(request.scope, status, detail, errors=errors),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_JSON,
    )


def _detail_text(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    return json.dumps(jsonable_encoder(detail))


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 204 or exc.status_code < 200:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return problem(request, exc.status_code, _detail_text(exc.detail), headers=exc.headers)


def _validation_summary(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "Invalid input"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"Invalid input at {where}: {first.get('msg')}{more}"


async def _validation_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    return problem(request, 422, _validation_summary(errors), errors=errors)


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


def _internal_error_body(scope: Scope, request_id: str) -> dict[str, Any]:
    return {**problem_body(scope, 500, "Internal error"), "request_id": request_id}


async def _unexpected_exception(request: Request, exc: Exception) -> Response:
    """Last resort (Starlette's ServerErrorMiddleware) for an error outside the app's
    own middleware; `UnhandledErrorMiddleware` answers everything raised inside it."""
    request_id = _log_unexpected(request.scope, exc)
    return JSONResponse(
        _internal_error_body(request.scope, request_id),
        status_code=500,
        headers={"X-Request-ID": request_id},
        media_type=PROBLEM_JSON,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_exception)
    app.add_exception_handler(Exception, _unexpected_exception)


class _HttpMiddleware:
    """An ASGI middleware of HTTP requests (`http`); other scopes (lifespan, websockets)
    pass straight through to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


E = TypeVar("E", bound=Exception)


async def _answering(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    error: type[E],
    answer: Callable[[E], Awaitable[None]],
) -> None:
    """Run `app`; an `error` it raises before its response started is answered by
    `answer(exc)` instead. Once the response has started there is nothing sane to send:
    then the error is re-raised."""
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, receive, tracking_send)
    except error as exc:
        if started:
            raise
        await answer(exc)


class UnhandledErrorMiddleware(_HttpMiddleware):
    """An exception no handler took becomes a JSON 500, and the connection stays open.

    The exception is not re-raised (Starlette's ServerErrorMiddleware would, and then
    uvicorn closes the keep-alive connection under a proxy that may reuse it). After the
    response has started there is nothing sane to send: then it is re-raised.
    """

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def internal_error(exc: Exception) -> None:
            request_id = _log_unexpected(scope, exc)
            await _send_json(send, 500, _internal_error_body(scope, request_id))

        await _answering(self.app, scope, receive, send, Exception, internal_error)


class ErrorOut(BaseModel):
    """An error: an RFC 9457 problem document (`application/problem+json`)."""

    type: str = Field(
        default="about:blank",
        description="A URI naming the kind of problem; `about:blank`: the status says it.",
    )
    title: str = Field(description="The status phrase.", examples=["Conflict"])
    status: int = Field(ge=400, le=599, description="The HTTP status code.", examples=[409])
    detail: str = Field(description="What went wrong, for a human.")
    instance: str = Field(description="The request path.", examples=["/draft-orders"])
    request_id: str = Field(
        description="The request's X-Request-ID (its log lines carry it).",
        examples=["6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"],
    )


class InternalErrorOut(ErrorOut):
    """A 500: a bug; the request id finds its log lines."""


class ValidationIssueOut(BaseModel):
    """One request validation problem (the offending input is never echoed)."""

    type: str | None = Field(description="Pydantic's error type, e.g. `missing`.")
    loc: list[str | int] = Field(
        description="Where: `body`/`query`/`path`/... then the field path."
    )
    msg: str
    ctx: dict[str, str] | None = Field(default=None, description="The constraint's parameters.")


class RequestErrorOut(ErrorOut):
    """A 422: a problem document whose `errors` lists each invalid input (when the
    request itself was invalid; absent when a rule of the service refused it)."""

    errors: list[ValidationIssueOut] | None = Field(default=None)


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
    405: "Method not allowed on this path (`Allow` lists the methods it takes)",
    401: "Missing or invalid bearer token",
    403: "The token lacks a required role",
    404: "Not found in the caller's organisation",
    409: "Conflict with the current state or a concurrent change",
    412: "A precondition (If-Match, If-Unmodified-Since) does not hold: the resource changed",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid input (also: a NUL character or a lone surrogate in any string)",
    428: "A precondition header (If-Match) is required (REQUIRE_PRECONDITIONS is on)",
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
        out[code] = problem_response_doc(code, wording.get(code, "Error"))
    return out


def links_by_id(parameter: str, *operation_ids: str) -> dict[str, Any]:
    """OpenAPI links from a response whose body holds a resource's `id` to operations
    that take it as the path parameter `parameter` (each named after its operation)."""
    return {
        "".join(word.capitalize() for word in operation_id.split("_")): {
            "operationId": operation_id,
            "parameters": {parameter: "$response.body#/id"},
        }
        for operation_id in operation_ids
    }


def problem_response_doc(code: int, description: str) -> dict[str, Any]:
    """One OpenAPI response entry: a problem document as `application/problem+json`."""
    model = RequestErrorOut if code == 422 else ErrorOut
    doc: dict[str, Any] = {
        "model": model,
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
    }
    if code == 503:
        doc["headers"] = {"Retry-After": {"description": "Seconds", "schema": {"type": "string"}}}
    return doc


async def require_json_body(request: Request) -> None:
    """Route dependency: a body that is not `application/json` (or `+json`) is a 415."""
    if not _is_json_media(request.headers.get("content-type", "")):
        raise StarletteHTTPException(415, "Content-Type must be application/json")


def _is_json_media(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


# --- conditional requests ------------------------------------------------------------

IfMatchHeader = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=1024,
        description="Optional (required when the server runs with REQUIRE_PRECONDITIONS): "
        'the resource\'s `ETag` as last read (e.g. `"3"`), or `*`; a mismatch is a 412 '
        "and nothing changes.",
        examples=["*"],
    ),
]
IfUnmodifiedSinceHeader = Annotated[
    str | None,
    Header(
        alias="If-Unmodified-Since",
        max_length=64,
        description="Optional HTTP-date: 412 when the resource changed after it "
        "(ignored with If-Match, or when not an HTTP-date).",
        examples=["Tue, 01 Dec 2026 10:00:00 GMT"],
    ),
]


async def request_preconditions(
    request: Request,
    if_match: IfMatchHeader = None,
    if_unmodified_since: IfUnmodifiedSinceHeader = None,
) -> Preconditions:
    """The request's preconditions; 428 when the app requires one and none is given."""
    found = Preconditions(
        if_match=parse_if_match(if_match),
        if_unmodified_since=parse_http_date(if_unmodified_since),
    )
    if getattr(request.app.state, "require_preconditions", False) and not found.given:
        raise StarletteHTTPException(
            428,
            "This request must be conditional: send If-Match with the ETag from a GET",
        )
    return found


PreconditionsDep = Annotated[Preconditions, Depends(request_preconditions)]


def set_validators(response: Response, version: int | str, updated_at: Any = None) -> None:
    """`ETag` (and `Last-Modified`) of the resource a response carries."""
    response.headers["ETag"] = entity_tag(version)
    if updated_at is not None:
        response.headers["Last-Modified"] = http_date(updated_at)


def string_header(description: str) -> dict[str, Any]:
    """The OpenAPI document of a response header that is a string."""
    return {"description": description, "schema": {"type": "string"}}


VALIDATOR_HEADERS: dict[str, Any] = {
    "ETag": {
        "description": 'The resource\'s version as an entity tag (`"3"`): send it back as '
        "If-Match to change it only if nobody else did",
        "schema": {"type": "string"},
    },
    "Last-Modified": {
        "description": "When the resource last changed (for If-Unmodified-Since)",
        "schema": {"type": "string"},
    },
}


# --- hostile text ---------------------------------------------------------------------

#: cheap look at raw UTF-8 JSON: a `\u0000` or surrogate escape (a pair is fine, but
#: then json.loads decides); raw NUL bytes are never UTF-8 JSON text
_SUSPECT_JSON = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_NOT_UTF8 = "Request body must be JSON encoded as UTF-8"


def _json_integer(value: Any) -> Any:
    """JSON Schema's integer: a number without fraction (`22` or `22.0`), never `"22"`
    nor `true`; 22.5 fails pydantic's own check after this one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


class JsonInteger:
    """`Annotated[int, JsonInteger(1, 65535)]`: an int as JSON Schema means it, from
    `minimum` to `maximum`. `714.0` is one (the schema says so, and a client generated
    from it may send it), `"714"` and `true` are not, 22.5 is not; the document says
    `{"type": "integer", "minimum": ..., "maximum": ...}`. Works in strict models too."""

    def __init__(self, minimum: int, maximum: int) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(
            _json_integer,
            core_schema.int_schema(ge=self.minimum, le=self.maximum, strict=False),
        )

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


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


class HostileTextMiddleware(_HttpMiddleware):
    """Looks at JSON request bodies before the app parses them.

    Not UTF-8 (or raw NUL bytes, e.g. UTF-16): 400. A string holding NUL or a lone
    surrogate, anywhere in the document: 422 with the `loc` of each. The body is
    decoded and parsed here only when a cheap byte scan finds a suspect escape.
    Runs inside the body size limit, so it never buffers more than that.
    """

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") in ("GET", "HEAD", "OPTIONS") or not _is_json_body(scope):
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
            if isinstance(detail, list):
                await _send_problem(scope, send, status, _validation_summary(detail), errors=detail)
            else:
                await _send_problem(scope, send, status, detail)
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


class RequestIdMiddleware(_HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
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


# --- trace context without an exporter ----------------------------------------------

_UNTRACED_PATHS = frozenset(f"/{path}" for path in tracing.EXCLUDED_PATHS.split(","))


class TraceContextMiddleware(_HttpMiddleware):
    """What the OpenTelemetry ASGI middleware does for a process that exports nothing:
    the request runs in a server span that continues the caller's `traceparent` (or
    starts a trace), unrecorded by the sampler, so its ids go on to the outbox and the
    log lines. Probes and scrapes run outside any span, as with the instrumentation."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("path") in _UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        carrier = {
            name: value
            for name in ("traceparent", "tracestate")
            if (value := _header(scope, name.encode()))
        }
        with tracing.span(
            f"{scope.get('method', 'GET')} request", parent=carrier, kind=tracing.SpanKind.SERVER
        ):
            await self.app(scope, receive, send)


# --- body size ----------------------------------------------------------------------


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"Request body larger than {max_bytes} bytes")


class BodySizeLimitMiddleware(_HttpMiddleware):
    """Refuses bodies above `max_bytes` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _send_problem(scope, send, 400, "Invalid Content-Length header")
                return
            if length > self.max_bytes:
                await _send_problem(scope, send, 413, BodyTooLarge(self.max_bytes).detail)
                return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def too_large(exc: BodyTooLarge) -> None:
            await _send_problem(scope, send, 413, exc.detail)

        await _answering(self.app, scope, limited_receive, send, BodyTooLarge, too_large)


def body_size_limit(app: FastAPI, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_bytes)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> None:
    response = JSONResponse(
        body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {})
    )
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


async def _send_problem(
    scope: Scope,
    send: Send,
    status: int,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    await _send_json(send, status, problem_body(scope, status, detail, errors=errors), headers)


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


class HttpMetricsMiddleware(_HttpMiddleware):
    """Counts requests and observes latency, labelled by route template (not raw path)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        super().__init__(app)
        self.service = service

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
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


# --- HTTP methods: 405 with every allowed method, HEAD, OPTIONS ----------------------


class HttpMethodsMiddleware(_HttpMiddleware):
    """RFC 9110 method semantics over the app's routes.

    A path that some route matches: `OPTIONS` answers 204 with `Allow`; `HEAD` runs the
    `GET` route and sends no body; any other method no route of that path takes is a
    405 whose `Allow` lists every method of the path (Starlette names only the first
    matching route's). Paths no route matches pass on (404).
    """

    def __init__(self, app: ASGIApp, routes_of: FastAPI) -> None:
        super().__init__(app)
        self.routes_of = routes_of

    def allowed(self, scope: Scope) -> tuple[set[str], set[str]]:
        """The methods the path's routes declare, and all it allows (+HEAD, OPTIONS)."""
        path = scope.get("path", "")
        methods: set[str] = set()
        pending: list[Any] = list(self.routes_of.router.routes)
        while pending:
            route = pending.pop()
            if isinstance(route, Mount):
                if path == route.path or path.startswith(route.path + "/"):
                    methods |= {"GET", "HEAD"}
            elif hasattr(route, "effective_candidates"):
                # FastAPI keeps an included router as one entry with its routes inside
                pending.extend(route.effective_candidates())
            elif hasattr(route, "path_regex") and route.path_regex.match(path):
                methods |= set(getattr(route, "methods", None) or ())
        allowed = set(methods)
        if "GET" in allowed:
            allowed.add("HEAD")
        if allowed:
            allowed.add("OPTIONS")
        return methods, allowed

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared, allowed = self.allowed(scope)
        method = scope.get("method", "GET")
        if not allowed or method in declared:
            await self.app(scope, receive, send)
            return
        allow = ", ".join(sorted(allowed))
        if method == "OPTIONS":
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [(b"allow", allow.encode()), (b"cache-control", b"max-age=0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        if method == "HEAD" and "HEAD" in allowed:
            await self.app({**scope, "method": "GET"}, receive, _without_body(send))
            return
        await _send_problem(
            scope,
            send,
            405,
            f"Method {method} not allowed on this path; allowed: {allow}",
            headers={"Allow": allow},
        )


def _without_body(send: Send) -> Send:
    """A `send` for HEAD: the GET's status and headers (Content-Length too), no body."""

    async def head_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return head_send


def _cors_origins(value: str | Sequence[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


# --- API docs: Swagger UI from the installed swagger-ui-bundle ------------------------

#: where the docs pages load Swagger UI from (relative: works behind /_svc/<service>/)
DOCS_STATIC = "docs-static"


def swagger_ui_dir() -> Path:
    """The Swagger UI dist files installed with the project (PyPI swagger-ui-bundle-v2)."""
    import swagger_ui_bundle

    return Path(str(swagger_ui_bundle.swagger_ui_path))


def _operations_fragment(spec: Mapping[str, Any], service: str) -> str:
    """Every operation of a spec as an HTML list: what `curl .../docs` shows."""
    rows = []
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method.lower() not in ("get", "post", "put", "patch", "delete"):
                continue
            summary = op.get("summary") or op.get("description") or ""
            rows.append(
                f"<li><code>{html.escape(method.upper())} {html.escape(path)}</code>"
                f" &mdash; {html.escape(summary.splitlines()[0] if summary else '')}</li>"
            )
    return (
        f'<section class="orderflow-operations" data-service="{html.escape(service)}">'
        f"<h2>{html.escape(service)}</h2><ul>{''.join(rows)}</ul></section>\n"
    )


def install_docs(app: FastAPI, service: str) -> None:
    """`/docs` (Swagger UI of this service's own spec, loaded relative to the page, so
    `/_svc/<service>/docs` behind the gateway shows this service), `/docs-static/*`
    (the installed Swagger UI files) and `/docs/operations` (an HTML list of the
    operations, which the gateway's combined `/docs` includes)."""
    static = swagger_ui_dir()
    app.mount(f"/{DOCS_STATIC}", StaticFiles(directory=static), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png",
            oauth2_redirect_url=None,
        )
        operations = _operations_fragment(app.openapi(), service)
        body = (
            bytes(page.body)
            .decode()
            .replace("</body>", f"<noscript>{operations}</noscript></body>")
        )
        return HTMLResponse(body)

    @app.get("/docs/operations", include_in_schema=False)
    async def operations() -> HTMLResponse:
        return HTMLResponse(_operations_fragment(app.openapi(), service))


# --- OpenAPI: servers, problem documents --------------------------------------------


def _not_null(parameter: dict[str, Any]) -> None:
    """A header, query or path parameter is a string or absent, never JSON `null`:
    `anyOf: [X, {type: null}]` (FastAPI's `X | None`) becomes X."""
    schema = parameter.get("schema", {})
    branches = schema.get("anyOf")
    if not branches:
        return
    rest = [branch for branch in branches if branch.get("type") != "null"]
    if len(rest) == 1 and len(rest) < len(branches):
        del schema["anyOf"]
        schema.update(rest[0])


#: what HostileTextMiddleware refuses in any string, as JSON Schema
_NO_NUL = {"pattern": "\\u0000"}


def _strings_without_nul(node: Any) -> None:
    """Every free-text string schema says it takes no NUL character (a 422 at the edge)."""
    if isinstance(node, dict):
        if (
            node.get("type") == "string"
            and not {"pattern", "format", "enum", "const", "not"} & node.keys()
        ):
            node["not"] = dict(_NO_NUL)
        for value in node.values():
            _strings_without_nul(value)
    elif isinstance(node, list):
        for value in node:
            _strings_without_nul(value)


def _tighten_openapi(app: FastAPI) -> None:
    """The generated spec as the server answers: errors are `application/problem+json`
    (only), and a `servers` entry (the gateway's origin, where every path is routed)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()
        spec["servers"] = [
            {"url": "/", "description": "The gateway (or the service itself): same paths"}
        ]
        request_error = {"$ref": "#/components/schemas/RequestErrorOut"}
        used_default = False
        for item in spec.get("paths", {}).values():
            for op in item.values():
                if not isinstance(op, dict):
                    continue
                for parameter in op.get("parameters", []):
                    _not_null(parameter)
                for code, response in op.get("responses", {}).items():
                    content = response.get("content", {})
                    if not str(code).startswith(("4", "5")):
                        continue
                    if PROBLEM_JSON not in content:
                        # FastAPI's own 422 (HTTPValidationError): ours is a problem
                        used_default = True
                        response["content"] = {PROBLEM_JSON: {"schema": request_error}}
                    else:
                        content.pop("application/json", None)
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        if used_default and "RequestErrorOut" not in schemas:
            generated = RequestErrorOut.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            schemas.update(generated.pop("$defs", {}))
            schemas["RequestErrorOut"] = generated
        _strings_without_nul(spec.get("components", {}).get("schemas", {}))
        for item in spec.get("paths", {}).values():
            for op in item.values():
                if isinstance(op, dict):
                    _strings_without_nul(op.get("parameters", []))
                    _strings_without_nul(op.get("requestBody", {}))
        for unused in ("HTTPValidationError", "ValidationError"):
            if unused in schemas and f'schemas/{unused}"' not in json.dumps(
                {k: v for k, v in spec.items() if k != "components"}
            ) + json.dumps({k: v for k, v in schemas.items() if k != unused}):
                del schemas[unused]
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


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
    cors_allowed_origins: str | Sequence[str] = (),
    require_preconditions: bool = False,
    **fastapi_kwargs: Any,
) -> FastAPI:
    """A FastAPI app with error handlers, body limit, HTTP metrics, health and metrics.

    Add the service's own routers to the result (they inherit the app-wide check of
    path and query parameters). `checks=None` reads `app.state.health_checks` (set it
    in the lifespan). `cors_allowed_origins` (comma-separated or a list; empty: CORS
    off) are the origins a browser may call from; `require_preconditions` makes
    `If-Match` mandatory (428) where a route takes it.
    """
    dependencies = [Depends(reject_hostile_parameters), *fastapi_kwargs.pop("dependencies", [])]
    exporting = tracing.is_exporting()
    if not exporting:
        # FastAPI's own telemetry would trace with the (non-exporting) SDK provider
        fastapi_kwargs.setdefault("telemetry", {"tracing": False, "metrics": False, "logs": False})
    app = FastAPI(
        title=title,
        version=version,
        lifespan=lifespan,
        dependencies=dependencies,
        docs_url=None,
        redoc_url=None,
        **fastapi_kwargs,
    )
    app.state.require_preconditions = require_preconditions
    install_error_handlers(app)
    # outermost last: request id > CORS > metrics > unhandled errors > methods > body
    # limit > hostile text
    app.add_middleware(HostileTextMiddleware)
    body_size_limit(app, max_body_bytes)
    app.add_middleware(HttpMethodsMiddleware, routes_of=app)
    app.add_middleware(UnhandledErrorMiddleware)
    install_http_metrics(app, service or title)
    origins = _cors_origins(cors_allowed_origins)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "HEAD", "POST", "PATCH", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "If-Unmodified-Since",
                "X-Request-ID",
            ],
            expose_headers=[
                "ETag",
                "Last-Modified",
                "Location",
                "Link",
                "X-Next-Cursor",
                "X-Request-ID",
                "Idempotent-Replayed",
                "Retry-After",
            ],
            max_age=600,
        )
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health_router(checks))
    app.include_router(metrics_router())
    install_docs(app, service or title)
    _tighten_openapi(app)
    if verifier is not None:
        install_auth(app, verifier)
    if exporting:
        tracing.instrument_app(app)
    else:
        app.add_middleware(TraceContextMiddleware)
    return app
