"""The services' public HTTP APIs, called with the signed-in user's own token.

Every refusal becomes an `ApiRefusal` with a sentence a person can read (the problem
document's `detail`, the fields of a 422), never a stack trace or raw JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

SERVICE_NAMES = {
    "draft-api": "draft service",
    "export-service": "ERP connection service",
    "audit-service": "audit service",
}
_GENERIC = {
    400: "The request was refused as malformed.",
    401: "Your session has expired; sign in again.",
    403: "You are not allowed to do this.",
    404: "Not found in your organisation.",
    409: "This conflicts with the current state; reload and try again.",
    412: "Someone changed this in the meantime; reload and try again.",
    413: "What you sent is too large.",
    415: "The request had the wrong format.",
    422: "Some of what you entered is not valid.",
    428: "The server needs the version you edited; reload and try again.",
    429: "Too many requests; wait a moment and try again.",
    503: "is busy or unavailable right now; try again in a moment.",
}


@dataclass
class ApiRefusal(Exception):
    """A status >= 400 (or no answer) with a message fit for the page."""

    status: int
    message: str
    fields: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Any
    headers: httpx.Headers


def _field_errors(body: Any) -> list[str]:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    out = []
    for error in errors[:10]:
        if not isinstance(error, dict):
            continue
        loc = [str(p) for p in error.get("loc", []) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "input"
        out.append(f"{where}: {error.get('msg', 'invalid')}")
    return out


def refusal_of(service: str, status: int, body: Any) -> ApiRefusal:
    detail = body.get("detail") if isinstance(body, dict) else None
    fields = _field_errors(body) if status == 422 else []
    if status >= 500 or status == 503:
        name = SERVICE_NAMES.get(service, service)
        text = f"The {name} {_GENERIC[503]}"
        if isinstance(detail, str) and status == 503 and detail:
            text = f"{text} ({detail})"
        return ApiRefusal(503 if status >= 500 else status, text)
    if isinstance(detail, str) and detail.strip():
        text = detail.strip()
        if not text.endswith((".", "!", "?")):
            text += "."
    else:
        text = _GENERIC.get(status, f"The request was refused ({status}).")
    return ApiRefusal(status, text, fields)


class Api:
    """One user's view of the three services (the client is shared by the process)."""

    def __init__(self, client: httpx.AsyncClient, urls: dict[str, str], token: str) -> None:
        self._client = client
        self._urls = urls
        self._token = token

    async def send(
        self,
        service: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> ApiResponse:
        """The answer, whatever its status; ApiRefusal(503) when there is none."""
        sent = {"Authorization": f"Bearer {self._token}", **(headers or {})}
        try:
            response = await self._client.request(
                method,
                self._urls[service] + path,
                json=json,
                params={k: v for k, v in (params or {}).items() if v not in (None, "")},
                headers=sent,
            )
        except httpx.HTTPError as exc:
            name = SERVICE_NAMES.get(service, service)
            raise ApiRefusal(503, f"The {name} cannot be reached right now; try again.") from exc
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        return ApiResponse(response.status_code, body, response.headers)

    async def call(self, service: str, method: str, path: str, **kwargs: Any) -> ApiResponse:
        """The answer of a request that must succeed; ApiRefusal otherwise."""
        answer = await self.send(service, method, path, **kwargs)
        if answer.status >= 400:
            raise refusal_of(service, answer.status, answer.body)
        return answer

    async def get(self, service: str, path: str, **kwargs: Any) -> Any:
        return (await self.call(service, "GET", path, **kwargs)).body
