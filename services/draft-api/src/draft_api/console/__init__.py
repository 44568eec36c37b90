"""The operator console: server-rendered pages under /ui, live status over SSE.

`install(app)` mounts it on draft-api's app: the routes, the static files, the error
pages, and the feed's start and stop around the app's own lifespan. The console talks to
draft-api, export-service and audit-service only through their public HTTP APIs, with
the signed-in user's token (`CONSOLE_*_URL`); the feed is a Kafka consumer of this
process (see `feed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from orderflow_shared.messaging.kafka import client_options

from draft_api.console.api import ApiRefusal
from draft_api.console.feed import Feed
from draft_api.console.routes import Refused, SignInRequired, render, router
from draft_api.console.settings import ConsoleSettings
from draft_api.console.state import HERE, ConsoleState, make_templates

__all__ = ["install"]


def install(app: FastAPI, settings: ConsoleSettings | None = None) -> None:
    """Mount the console at /ui and run its feed while the app runs."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(ApiRefusal, _api_refusal)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with inner(app) as state:
            # the app's own settings (bootstrap puts them on its container), else the env's
            container = getattr(app.state, "container", None)
            chosen = settings or getattr(container, "settings", None) or ConsoleSettings()
            async with _running(app, chosen):
                yield state

    app.router.lifespan_context = lifespan


@contextlib.asynccontextmanager
async def _running(app: FastAPI, settings: ConsoleSettings) -> AsyncIterator[None]:
    # one line per API call would drown the service's log (the gateway logs requests)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    client = httpx.AsyncClient(
        timeout=settings.console_api_timeout_seconds,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        follow_redirects=False,
    )
    state = ConsoleState(settings, client, Feed(client_options(settings)), make_templates())
    app.state.console = state  # the feed starts with its first page (state.start_feed)
    try:
        yield
    finally:
        state.stop.set()
        if state.task is not None:
            try:
                await asyncio.wait_for(state.task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                state.task.cancel()
        await client.aclose()


async def _sign_in_required(request: Request, exc: Exception) -> RedirectResponse:
    assert isinstance(exc, SignInRequired)
    return RedirectResponse(f"/ui/sign-in?next={quote(exc.next_url)}", status_code=303)


def _error_page(request: Request, status: int, message: str, fields: list[str]) -> HTMLResponse:
    return render(
        request,
        "error.html",
        status_code=status,
        user=None,
        message=message,
        fields=fields,
        code=status,
    )


async def _refused(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, Refused)
    return _error_page(request, exc.status, exc.message, [])


async def _api_refusal(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, ApiRefusal)
    if exc.status == 401:
        return RedirectResponse("/ui/sign-in", status_code=303)  # type: ignore[return-value]
    return _error_page(request, exc.status, exc.message, exc.fields)
