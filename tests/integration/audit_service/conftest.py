"""audit-service against the real Postgres and Kafka of the `infra` fixture.

Each test module gets a database of its own (same cluster, schema `audit` owned by
`audit_owner`, migrated), and each ingest its own consumer groups, so nothing here
races the services of a running `stack`. While developing, AUDIT_IT_SUPERUSER_DSN,
AUDIT_IT_OWNER_URL, AUDIT_IT_RUNTIME_URL and AUDIT_IT_KAFKA point the tests at servers
already running instead (all four must be set).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import psycopg
import pytest
from audit_service.entrypoints.cli import migrate
from audit_service.settings import AuditSettings
from orderflow_shared.auth import mint_token
from orderflow_shared.messaging.envelope import Envelope
from orderflow_shared.messaging.kafka import (
    KafkaOptions,
    ensure_topics,
    make_idempotent_producer,
)
from sqlalchemy.engine import make_url

DEADLINE = 90.0
REPO = Path(__file__).resolve().parents[3]
JWT_SECRET_FALLBACK = "audit-it-secret-0123456789abcdef0123456789"


def _load_samples() -> ModuleType:
    name = "audit_service_test_samples"
    if name not in sys.modules:
        path = REPO / "tests" / "unit" / "audit_service" / "samples.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def samples() -> ModuleType:
    return _load_samples()


@dataclass(frozen=True)
class Servers:
    superuser_dsn: str  # libpq or SQLAlchemy URL of a superuser
    owner_url: str  # audit_owner (runs migrations)
    runtime_url: str  # audit_service (runs the service)
    kafka: dict[str, Any]  # aiokafka options of the admin principal (test plumbing)
    jwt_secret: str
    #: KAFKA_* settings of the audit-service principal (the service under test)
    service_kafka_env: dict[str, str]


@pytest.fixture(scope="session")
def servers(request: pytest.FixtureRequest) -> Servers:
    env = [os.environ.get(f"AUDIT_IT_{n}") for n in ("SUPERUSER_DSN", "OWNER_URL", "RUNTIME_URL")]
    kafka = os.environ.get("AUDIT_IT_KAFKA")
    if all(env) and kafka:
        su, owner, runtime = (str(v) for v in env)
        plain = {"KAFKA_BOOTSTRAP_SERVERS": kafka}
        found = Servers(
            su, owner, runtime, {"bootstrap_servers": kafka}, JWT_SECRET_FALLBACK, plain
        )
    else:
        infra = request.getfixturevalue("infra")
        found = Servers(
            infra.superuser_dsn,
            infra.migration_database_urls["audit-service"],
            infra.database_urls["audit-service"],
            infra.kafka_options("admin"),
            infra.jwt_secret,
            {k.upper(): v for k, v in infra.kafka_settings("audit-service").items()},
        )
    asyncio.run(ensure_topics(found.kafka, 6, 1))
    return found


def _on(url: str, database: str, driver: str | None = None) -> str:
    parsed = make_url(url).set(database=database)
    if driver:
        parsed = parsed.set(drivername=driver)
    return parsed.render_as_string(hide_password=False)


@dataclass
class AuditDb:
    """A throw-away database with schema `audit`, reached as superuser for checks."""

    name: str
    servers: Servers

    @property
    def superuser(self) -> str:
        return _on(self.servers.superuser_dsn, self.name, "postgresql")

    @property
    def runtime_url(self) -> str:
        return _on(self.servers.runtime_url, self.name, "postgresql+psycopg")

    @property
    def owner_url(self) -> str:
        return _on(self.servers.owner_url, self.name, "postgresql+psycopg")

    def rows(self, sql: str, params: Any = None, *, as_url: str | None = None) -> list[Any]:
        conninfo = _on(as_url, self.name, "postgresql") if as_url else self.superuser
        with psycopg.connect(conninfo, autocommit=True) as conn:
            cur = conn.execute(sql, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def count(self, org_id: str, action: str | None = None) -> int:
        sql = "SELECT count(*) FROM audit.audit_log WHERE org_id = %s"
        params: list[Any] = [org_id]
        if action:
            sql += " AND action = %s"
            params.append(action)
        return int(self.rows(sql, params)[0][0])

    def create(self) -> None:
        owner = make_url(self.servers.owner_url).username
        runtime = make_url(self.servers.runtime_url).username
        admin = _on(
            self.servers.superuser_dsn,
            make_url(self.servers.superuser_dsn).database or "postgres",
            "postgresql",
        )
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.name}"')
        with psycopg.connect(self.superuser, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA audit AUTHORIZATION "{owner}"')
            conn.execute(f'GRANT USAGE ON SCHEMA audit TO "{runtime}"')
            conn.execute(f'GRANT CONNECT ON DATABASE "{self.name}" TO "{owner}", "{runtime}"')

    def drop(self) -> None:
        admin = _on(
            self.servers.superuser_dsn,
            make_url(self.servers.superuser_dsn).database or "postgres",
            "postgresql",
        )
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def settings(self, **overrides: Any) -> AuditSettings:
        values: dict[str, Any] = {
            "orderflow_env": "test",
            "database_url": self.runtime_url,
            "migration_database_url": self.owner_url,
            **{k.lower(): v for k, v in self.servers.service_kafka_env.items()},
            "jwt_secret": self.servers.jwt_secret,
            "db_pool_size": 4,
        }
        values.update(overrides)
        return AuditSettings(**values)


@pytest.fixture(scope="module")
def audit_db(servers: Servers, request: pytest.FixtureRequest) -> Iterator[AuditDb]:
    name = f"audit_it_{request.module.__name__.rsplit('.', 1)[-1]}"[:60]
    db = AuditDb(name, servers)
    db.create()
    migrate(db.settings())
    yield db
    db.drop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AuditProcess:
    """audit-service as a deployment runs it: `python -m audit_service serve` (the HTTP
    API) and `python -m audit_service ingest`, each a child in its own process group."""

    ROLES = ("serve", "ingest")

    def __init__(self, db: AuditDb, group: str, log_path: Path) -> None:
        self.ports = {role: free_port() for role in self.ROLES}
        self.group = group
        self.log_path = log_path
        self.env = {
            **os.environ,
            "ORDERFLOW_ENV": "test",
            "DATABASE_URL": db.runtime_url,
            "MIGRATION_DATABASE_URL": db.owner_url,
            **db.servers.service_kafka_env,
            "JWT_SECRET": db.servers.jwt_secret,
            "HTTP_HOST": "127.0.0.1",
            "AUDIT_CONSUMER_GROUP": group,
            "AUDIT_LAG_INTERVAL_SECONDS": "1",
            "AUDIT_TOPIC_REFRESH_MS": "1000",
            "DB_POOL_SIZE": "4",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def port(self) -> int:
        return self.ports["serve"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['serve']}"

    def role_url(self, role: str) -> str:
        return f"http://127.0.0.1:{self.ports[role]}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        for role in self.ROLES:
            self.procs[role] = subprocess.Popen(
                [sys.executable, "-m", "audit_service", role],
                env={**self.env, "HTTP_PORT": str(self.ports[role])},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: all(self._ready(role) for role in self.ROLES), "audit-service ready", 60)

    def _ready(self, role: str) -> bool:
        proc = self.procs[role]
        if proc.poll() is not None:
            raise AssertionError(
                f"audit-service {role} exited: {self.log_path.read_text()[-3000:]}"
            )
        try:
            return httpx.get(f"{self.role_url(role)}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)

    def metrics(self) -> str:
        """The ingest process's /metrics (the figures of the consumers)."""
        return httpx.get(f"{self.role_url('ingest')}/metrics", timeout=10).text

    def get(self, path: str, *, org: str, roles: tuple[str, ...] = ("viewer",), **params: Any):  # type: ignore[no-untyped-def]
        token = mint_token(self.env["JWT_SECRET"], sub="auditor-1", org_id=org, roles=roles)
        return httpx.get(
            f"{self.url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )


@pytest.fixture(scope="module")
def audit_service(
    audit_db: AuditDb, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuditProcess]:
    group = f"audit-service-it-{uuid.uuid4().hex[:10]}"  # the principal's own groups
    process = AuditProcess(audit_db, group, tmp_path_factory.mktemp("audit") / "serve.log")
    process.start()
    yield process
    process.stop()


def wait_for(check: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """Poll `check` until it returns something truthy; fail after the deadline."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        time.sleep(0.2)


async def _produce(
    kafka: KafkaOptions, records: list[tuple[str, bytes | None, bytes, list[Any]]]
) -> None:
    producer = make_idempotent_producer(kafka, f"audit-it-{uuid.uuid4().hex[:6]}")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def produce(kafka: KafkaOptions, envelopes: list[Envelope]) -> None:
    asyncio.run(
        _produce(kafka, [(e.topic, e.key.encode(), e.data, e.kafka_headers()) for e in envelopes])
    )


def produce_raw(
    kafka: KafkaOptions, topic: str, value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    asyncio.run(_produce(kafka, [(topic, b"poison", value, headers)]))
