"""How every service runs its long-lived work: one role per process, the same way.

A service has an HTTP role (`serve`) and background roles (an outbox relay, a
consumer, a delivery worker...). Each background role is a set of named loops
(`Runner`s) plus the readiness checks that tell whether it works. A process started
as `python -m <service> <role>` runs its role's loops under `supervised` and serves
`/livez`, `/readyz` and `/metrics` (its own figures) on HTTP_HOST:HTTP_PORT, so an
orchestrator can scale, probe and restart each role on its own.

- `Runner`: `async def run(stop: asyncio.Event) -> None`, returns once `stop` is set.
- `Role(loops, checks)`: what one role runs.
- `supervised(name, run, stop)`: run a loop until `stop`; a crash is logged and the
  loop restarted after a growing pause (it never takes the process down).
- `running(loops)`: async context manager that runs loops supervised and stops them
  on exit (after `grace` seconds they are cancelled).
- `container_lifespan(build, close, role_of)`: the lifespan every service's app uses:
  build the container, put it on `app.state.container`, run the role's loops, close.
- `role_app(title, version, lifespan)`: the small app of a background role.
- `package_version(distribution)`: the version from package metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI

from orderflow_shared.web import HealthCheck, health_router, metrics_router

log = logging.getLogger(__name__)

Runner = Callable[[asyncio.Event], Awaitable[object]]

#: the pause after a loop's first crash, doubled after each further one, up to the max
RESTART_DELAY_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 30.0


@dataclass
class Role:
    """The loops one role runs, and the checks of its `/readyz`."""

    loops: dict[str, Runner] = field(default_factory=dict)
    checks: dict[str, HealthCheck] = field(default_factory=dict)

    def merge(self, other: Role) -> Role:
        return Role({**self.loops, **other.loops}, {**self.checks, **other.checks})


async def supervised(name: str, run: Runner, stop: asyncio.Event) -> None:
    """Keep a loop alive until `stop`: a crash is logged and the loop restarted."""
    delay = RESTART_DELAY_SECONDS
    while not stop.is_set():
        try:
            await run(stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting in %.1fs", name, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, MAX_RESTART_DELAY_SECONDS)
        else:
            delay = RESTART_DELAY_SECONDS


@contextlib.asynccontextmanager
async def running(loops: Mapping[str, Runner], *, grace: float = 15.0) -> AsyncIterator[None]:
    """Run `loops` supervised while the block runs; on exit ask them to stop, wait up to
    `grace` seconds, then cancel what is left."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(supervised(name, run, stop), name=name) for name, run in loops.items()
    ]
    try:
        yield
    finally:
        stop.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def container_lifespan(
    build: Callable[[], Any],
    close: Callable[[Any], Awaitable[None]],
    role_of: Callable[[Any], Role],
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """The lifespan of a service's app: the container on `app.state.container`, the
    role's checks on `app.state.health_checks` (what `/readyz` asks), its loops running
    until shutdown, then the container closed."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = build()
        app.state.container = container
        try:
            role = role_of(container)
            app.state.health_checks = role.checks
            async with running(role.loops):
                yield
        finally:
            await close(container)

    return lifespan


def role_app(title: str, version: str, lifespan: Any) -> FastAPI:
    """The app of a background role: `/livez`, `/readyz` (`app.state.health_checks`, set
    by the lifespan) and `/metrics`; nothing else, and no OpenAPI document."""
    app = FastAPI(
        title=title,
        version=version,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(health_router())
    app.include_router(metrics_router())
    return app


def package_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "0.0.0"
