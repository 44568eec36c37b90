"""Wiring: builds adapters from settings and runs HTTP, relay, consumer and workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from orderflow_shared.auth import JwtVerifier
from orderflow_shared.db import db_reachable, make_engine, make_session_factory
from orderflow_shared.logging import configure_logging
from orderflow_shared.messaging.kafka import client_options, kafka_reachable
from orderflow_shared.messaging.outbox import OutboxRelay
from orderflow_shared.web import make_service_app
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from export_service.adapters.local_dropzone import LocalDropzoneTransport, LocalRoots
from export_service.adapters.orm import Tables, make_tables
from export_service.adapters.secret_box import FernetSecretBox
from export_service.adapters.sftp import SftpDropzoneTransport, SftpPool
from export_service.adapters.storage import FsArtifactStore
from export_service.adapters.unit_of_work import sql_uow_factory
from export_service.domain.circuit import CircuitPolicy
from export_service.domain.connection import ConnectorType
from export_service.domain.retry import RetryPolicy
from export_service.entrypoints.consumer import make_consumer, make_push_handler
from export_service.entrypoints.http import connections_router, install_domain_errors
from export_service.entrypoints.worker import DeliveryWorker
from export_service.service_layer.ports import Clock, Transports, UnitOfWorkFactory
from export_service.settings import ExportSettings

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Container:
    settings: ExportSettings
    engine: AsyncEngine
    tables: Tables
    uow_factory: UnitOfWorkFactory
    clock: Clock
    transports: Transports
    sftp_pool: SftpPool
    store: FsArtifactStore
    worker: DeliveryWorker
    local_roots: LocalRoots


def build(settings: ExportSettings, clock: Clock = utc_now) -> Container:
    # Every delivery in flight records its outcome on a connection of its own: a pool
    # smaller than that would open and close connections under load.
    pool_size = max(settings.db_pool_size, settings.export_worker_concurrency + 4)
    engine = make_engine(settings.database_url, pool_size=pool_size)
    tables = make_tables()
    box = FernetSecretBox(settings.export_encryption_key.get_secret_value())
    uow_factory = sql_uow_factory(make_session_factory(engine), tables, box)
    pool = SftpPool(
        connect_timeout=settings.sftp_connect_timeout_seconds,
        sessions_per_target=settings.sftp_sessions_per_target,
        uploads_per_session=settings.sftp_uploads_per_session,
        allow_private_targets=settings.sftp_private_targets_allowed,
    )
    local_roots = LocalRoots(settings.local_dropzone_roots)
    transports: Transports = {
        ConnectorType.SFTP: SftpDropzoneTransport(
            pool, connect_timeout=settings.sftp_connect_timeout_seconds
        ),
        ConnectorType.LOCAL: LocalDropzoneTransport(local_roots),
    }
    store = FsArtifactStore(settings.export_storage_dir)
    worker = DeliveryWorker(
        uow_factory=uow_factory,
        transports=transports,
        store=store,
        policy=retry_policy(settings),
        circuit_policy=circuit_policy(settings),
        per_connection=settings.export_connection_max_in_flight,
        clock=clock,
        lease=timedelta(seconds=settings.export_lease_seconds),
        concurrency=settings.export_worker_concurrency,
        poll_interval=settings.export_poll_interval_seconds,
    )
    return Container(
        settings=settings,
        engine=engine,
        tables=tables,
        uow_factory=uow_factory,
        clock=clock,
        transports=transports,
        sftp_pool=pool,
        store=store,
        worker=worker,
        local_roots=local_roots,
    )


def retry_policy(settings: ExportSettings) -> RetryPolicy:
    return RetryPolicy(
        base_seconds=settings.export_backoff_base_seconds,
        max_seconds=settings.export_backoff_max_seconds,
        deadline=timedelta(seconds=settings.export_delivery_deadline_seconds),
    )


def circuit_policy(settings: ExportSettings) -> CircuitPolicy:
    interval = settings.export_circuit_probe_interval_seconds
    return CircuitPolicy(
        failure_threshold=settings.export_circuit_failure_threshold,
        probe_interval=timedelta(seconds=interval),
        max_probe_interval=timedelta(seconds=max(interval, settings.export_backoff_max_seconds)),
    )


def _app_version() -> str:
    try:
        return version("orderflow-export-service")
    except PackageNotFoundError:
        return "0.0.0"


def make_app(settings: ExportSettings | None = None, *, background: bool = True) -> FastAPI:
    """The export-service app; `background=False` serves HTTP only (tests)."""
    settings = settings or ExportSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = build(settings)
        app.state.container = container
        stop = asyncio.Event()
        checks: dict[str, Callable[[], object]] = {
            "database": lambda: db_reachable(container.engine),
            "kafka": lambda: kafka_reachable(client_options(settings)),
        }
        tasks: list[asyncio.Task[None]] = []
        if background:
            relay = OutboxRelay(
                container.engine,
                container.tables.outbox,
                kafka=client_options(settings),
                batch_size=settings.outbox_batch_size,
                poll_interval=settings.outbox_poll_interval_seconds,
                client_id=f"{settings.service_name}-relay",
            )
            consumer = make_consumer(
                client_options(settings),
                make_push_handler(
                    container.uow_factory,
                    container.clock,
                    container.worker.wake,
                    deadline=timedelta(seconds=settings.export_delivery_deadline_seconds),
                ),
            )
            checks["consumer"] = consumer.ready
            checks["workers"] = container.worker.ready
            for name, runner in (
                ("outbox-relay", relay.run),
                ("consumer", consumer.run),
                ("delivery-worker", container.worker.run),
            ):
                tasks.append(asyncio.create_task(_supervised(name, runner, stop), name=name))
            child_env = {**os.environ, **settings_env(settings)}
            for number in range(1, settings.export_worker_processes):
                name = f"delivery-process-{number}"
                tasks.append(asyncio.create_task(_child_worker(name, child_env, stop), name=name))
        app.state.health_checks = checks
        try:
            yield
        finally:
            stop.set()
            if tasks:
                await asyncio.wait(tasks, timeout=15)
            for task in tasks:
                task.cancel()
            await container.sftp_pool.close()
            await container.engine.dispose()

    app = make_service_app(
        "OrderFlow export-service",
        _app_version(),
        lifespan,
        service=settings.service_name,
        verifier=JwtVerifier(settings),
        cors_allowed_origins=settings.cors_allowed_origins,
        require_preconditions=settings.require_preconditions,
    )
    app.include_router(connections_router())
    install_domain_errors(app)
    return app


def settings_env(settings: ExportSettings) -> dict[str, str]:
    """The settings as environment variables, for a child process to read them back."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[name.upper()] = str(value)
    return env


async def _child_worker(name: str, env: dict[str, str], stop: asyncio.Event) -> None:
    """An extra delivery process (`python -m export_service worker`), restarted if it
    dies; it stays in this process group, so it dies with it, and it exits by itself
    when this process goes away."""
    delay = 0.5
    while not stop.is_set():
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "export_service",
            "worker",
            "--parent",
            str(os.getpid()),
            env=env,
        )
        waiter = asyncio.ensure_future(child.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if stop.is_set():
            if child.returncode is None:
                child.terminate()
            await waiter
            return
        log.error("%s exited with %s; restarting in %.1fs", name, child.returncode, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        delay = min(delay * 2, 30.0)


async def run_delivery_process(settings: ExportSettings, parent_pid: int | None) -> None:
    """Body of `python -m export_service worker`: delivery only, until SIGTERM or the
    parent is gone."""
    container = build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def watch_parent() -> None:
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)

    watcher = asyncio.create_task(watch_parent())
    try:
        await _supervised("delivery-worker", container.worker.run, stop)
    finally:
        watcher.cancel()
        await container.sftp_pool.close()
        await container.engine.dispose()


async def _supervised(
    name: str, run: Callable[[asyncio.Event], object], stop: asyncio.Event
) -> None:
    """Keep a background loop alive: a crash is logged and the loop restarted."""
    delay = 0.5
    while not stop.is_set():
        try:
            await run(stop)  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting in %.1fs", name, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 30.0)


def configure(settings: ExportSettings) -> None:
    configure_logging(settings.service_name, settings.log_level)
    if settings.log_level.upper() != "DEBUG":
        # asyncssh logs every connection, channel and SFTP session at INFO
        logging.getLogger("asyncssh").setLevel(logging.WARNING)
