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
- `Wiring(title, distribution, build, close, http, roles)`: a service's wiring in one
  value; `lifespan(settings, roles)` for its HTTP app (with background roles in the
  same process, for tests), `role_app(settings, role)` for one role's process.
- `Wiring.service_app(settings, roles)`: the service's HTTP API app, made the same way
  for every service (auth, CORS, preconditions from its settings).
- `infra_checks(engine, kafka)`: the readiness checks of Postgres and Kafka;
  `service_checks(engine, settings)` the same with the service's Kafka settings.
- `outbox_relay_role(engine, outbox, settings)`: the `relay` role of a service that
  publishes through its outbox.
- `package_version(distribution)`: the version from package metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from fastapi import FastAPI

from orderflow_shared.timing import backoff, sleep_or_stop
from orderflow_shared.web import HealthCheck, health_router, make_service_app, metrics_router

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncEngine

    from orderflow_shared.settings import ServiceSettings

S = TypeVar("S", bound="ServiceSettings")
C = TypeVar("C")

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
    """Keep a loop alive until `stop`: a crash is logged and the loop restarted after
    `backoff` (from RESTART_DELAY_SECONDS, doubling per crash in a row)."""
    crashes = 0
    while not stop.is_set():
        try:
            await run(stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            crashes += 1
            delay = backoff(
                crashes, base=RESTART_DELAY_SECONDS, cap=MAX_RESTART_DELAY_SECONDS, jitter=False
            )
            log.exception("%s crashed; restarting in %.1fs", name, delay)
            await sleep_or_stop(stop, delay)
        else:
            crashes = 0


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
    app = FastAPI(title=title, version=version, lifespan=lifespan, openapi_url=None)  # no docs
    app.include_router(health_router())
    app.include_router(metrics_router())
    return app


def package_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "0.0.0"


def infra_checks(engine: AsyncEngine, kafka: Mapping[str, Any]) -> dict[str, HealthCheck]:
    """`/readyz` checks of what nearly every role needs: Postgres and Kafka."""
    from orderflow_shared.db import db_reachable
    from orderflow_shared.messaging.kafka import kafka_reachable

    options = dict(kafka)

    async def database() -> bool:
        return await db_reachable(engine)

    async def broker() -> bool:
        return await kafka_reachable(options)

    return {"database": database, "kafka": broker}


def service_checks(engine: AsyncEngine, settings: ServiceSettings) -> dict[str, HealthCheck]:
    """`infra_checks` of a service's engine and its Kafka settings."""
    from orderflow_shared.messaging.kafka import client_options

    return infra_checks(engine, client_options(settings))


def outbox_relay_role(engine: AsyncEngine, outbox: Table, settings: ServiceSettings) -> Role:
    """The `relay` role: publish the service's outbox to Kafka (OUTBOX_BATCH_SIZE rows at a
    time, polling every OUTBOX_POLL_INTERVAL_SECONDS between NOTIFYs)."""
    from orderflow_shared.messaging.kafka import client_options
    from orderflow_shared.messaging.outbox import OutboxRelay

    relay = OutboxRelay(
        engine,
        outbox,
        kafka=client_options(settings),
        batch_size=settings.outbox_batch_size,
        poll_interval=settings.outbox_poll_interval_seconds,
        client_id=f"{settings.service_name}-relay",
    )
    return Role({"outbox-relay": relay.run}, service_checks(engine, settings))


@dataclass(frozen=True)
class Wiring(Generic[S, C]):
    """How a service is put together: `build(settings) -> container`, `close`, the
    HTTP role's checks, and the background roles by name."""

    title: str
    distribution: str
    build: Callable[[S], C]
    close: Callable[[C], Awaitable[None]]
    http: Callable[[C], Role]
    roles: Mapping[str, Callable[[C], Role]]

    @property
    def version(self) -> str:
        return package_version(self.distribution)

    def lifespan(
        self, settings: S, roles: Iterable[str] = ()
    ) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
        """The HTTP app's lifespan; the background `roles` named run in it too."""
        names = tuple(roles)
        unknown = set(names) - set(self.roles)
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}; known: {sorted(self.roles)}")

        def role_of(container: C) -> Role:
            role = self.http(container)
            for name in names:
                role = role.merge(self.roles[name](container))
            return role

        return container_lifespan(lambda: self.build(settings), self.close, role_of)

    def service_app(self, settings: S, roles: Iterable[str] = (), **options: Any) -> FastAPI:
        """The service's HTTP API (add its routers to it), with the background `roles`
        named in the same process; `options` go to `make_service_app` (a description)."""
        from orderflow_shared.auth import JwtVerifier

        return make_service_app(
            self.title,
            self.version,
            self.lifespan(settings, roles),
            service=settings.service_name,
            verifier=JwtVerifier(settings),
            cors_allowed_origins=settings.cors_allowed_origins,
            require_preconditions=settings.require_preconditions,
            **options,
        )

    def role_app(self, settings: S, role: str) -> FastAPI:
        """One background role in its own process: health and metrics only."""
        return role_app(
            f"{self.title} {role}",
            self.version,
            container_lifespan(lambda: self.build(settings), self.close, self.roles[role]),
        )
