"""Fixtures of export-service's integration tier, on the devstack's `infra` fixture.

Real OpenSSH dropzone (chrooted, key auth), Postgres (roles and schema `export`) and
Kafka. Each test gets a directory of its own inside the dropzone's inbox and an org
of its own, so counts of files and events are exact. While these tests run, the
stack's own export-service (if a `stack` test started it) is stopped, so no other
worker with other settings claims the exports they make.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from export_service.domain.connection import ConnectorType, ErpConnection, Secrets, SftpSettings
from export_service.domain.renderers import FileFormat
from export_service.entrypoints.cli import migrate
from export_service.settings import ExportSettings
from orderflow_shared.contracts import DraftPushRequestedV1, OrderLineSnapshot, OrderSnapshot
from orderflow_shared.messaging.envelope import Envelope, EnvelopeError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEADLINE = 60.0
SFTP_USER = "orderflow-sftp"


async def eventually(check: Callable[[], Awaitable[Any]], what: str, deadline: float = DEADLINE):
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Dropzone:
    infra: Any
    host: str
    port: int
    username: str
    fingerprint: str
    private_key: str
    inbox: Path

    def connection(self, remote_directory: str = "/inbox", **changes: object) -> ErpConnection:
        settings: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "remote_directory": remote_directory,
            "host_key_fingerprint": self.fingerprint,
        }
        secrets = Secrets(private_key=str(changes.pop("private_key", self.private_key)))
        settings.update(changes)
        now = datetime.now(UTC)
        return ErpConnection(
            id=uuid.uuid4(),
            org_id="org-it",
            name="it",
            connector_type=ConnectorType.SFTP,
            is_active=True,
            file_format=FileFormat.CSV,
            file_name_template="{external_ref}_{export_id}",
            sftp=SftpSettings(**settings),
            local=None,
            secrets=secrets,
            created_at=now,
            updated_at=now,
        )

    def stop_sshd(self) -> None:
        self.infra.stop("sftp")

    def start_sshd(self) -> None:
        self.infra.start("sftp")


@dataclass
class Box:
    """A directory of the dropzone for one test: `/inbox/<name>` remotely."""

    path: Path
    remote: str

    def files(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir())


@pytest.fixture(scope="session")
def dropzone(infra: Any) -> Dropzone:
    return Dropzone(
        infra=infra,
        host=infra.sftp_host,
        port=infra.sftp_port,
        username=infra.sftp_username,
        fingerprint=infra.sftp_host_key_fingerprint,
        private_key=infra.sftp_private_key,
        inbox=Path(infra.inbox_dir),
    )


@pytest.fixture
def box(dropzone: Dropzone) -> Iterator[Box]:
    name = f"it-{uuid.uuid4().hex[:10]}"
    path = dropzone.inbox / name
    path.mkdir()
    account = pwd.getpwnam(SFTP_USER)
    os.chown(path, account.pw_uid, account.pw_gid)
    yield Box(path=path, remote=f"/inbox/{name}")
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def export_env(infra: Any) -> dict[str, str]:
    env = dict(infra.service_env("export-service"))
    migrate(ExportSettings(**{k.lower(): v for k, v in env.items()}))
    return env


def make_settings(env: dict[str, str], **overrides: Any) -> ExportSettings:
    values: dict[str, Any] = {k.lower(): v for k, v in env.items()}
    values.update(overrides)
    return ExportSettings(**values)


@pytest.fixture
def exclusive(infra: Any) -> Iterator[None]:
    """No other export-service process claims exports while the test runs: the stack's
    own one (if an e2e test started it) is stopped and started again afterwards. Only
    for tests whose settings (retry bound, lease) or figures another worker would skew."""
    was_running = infra.is_running("export-service")
    if was_running:
        infra.stop("export-service")
    yield
    if was_running:
        infra.start("export-service")


@pytest.fixture
async def db(infra: Any) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(
        infra.superuser_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    )
    yield engine
    await engine.dispose()


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).mappings())


def snapshot(org_id: str, external_ref: str | None = "PO-4711") -> OrderSnapshot:
    return OrderSnapshot(
        draft_id=uuid.uuid4(),
        org_id=org_id,
        customer_id="C-1001",
        external_ref=external_ref,
        currency="EUR",
        total=Decimal("28.50"),
        approved_by_user_id="approver-1",
        approved_at=datetime(2026, 3, 1, 11, 0, tzinfo=UTC),
        created_at=datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
        lines=[
            OrderLineSnapshot(
                line_no=1,
                sku="SKU-1",
                description="Widget",
                quantity=Decimal("3"),
                unit="EA",
                unit_price=Decimal("9.50"),
                currency="EUR",
                line_total=Decimal("28.50"),
            )
        ],
    )


@dataclass
class Kafka:
    reader: dict[str, Any]  # aiokafka options of the admin principal (reads any topic)
    producer: AIOKafkaProducer  # logged in as draft-api, the producer of the push requests
    sent: list[Envelope] = field(default_factory=list)

    async def push(self, org_id: str, external_ref: str | None = "PO-4711") -> Envelope:
        """Publish a draft.push_requested as draft-api would; the envelope."""
        order = snapshot(org_id, external_ref)
        data = DraftPushRequestedV1(
            draft_id=order.draft_id,
            erp_export_id=uuid.uuid4(),
            attempt=1,
            requested_at=datetime.now(UTC),
            order=order,
        )
        envelope = Envelope.wrap(
            data,
            source="draft-api",
            subject=str(order.draft_id),
            org_id=org_id,
            actor_id="user-1",
        )
        await self.producer.send_and_wait(
            envelope.topic,
            envelope.data,
            key=envelope.key.encode(),
            headers=envelope.kafka_headers(),
        )
        self.sent.append(envelope)
        return envelope

    async def events(self, topic: str, subjects: set[str], count: int) -> list[Envelope]:
        """Read `topic` from the start until events of `count` distinct ids are seen
        (a relay killed mid-batch may publish an event twice, with the same id)."""
        consumer = AIOKafkaConsumer(
            topic,
            **self.reader,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        found: list[Envelope] = []
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + DEADLINE
            while len({e.id for e in found}) < count and loop.time() < end:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        try:
                            envelope = Envelope.from_kafka(record.key, record.value, record.headers)
                        except EnvelopeError:
                            continue  # another test's poison record: not one of ours
                        if envelope.subject in subjects:
                            found.append(envelope)
        finally:
            await consumer.stop()
        return found


@pytest.fixture
async def kafka(infra: Any) -> AsyncIterator[Kafka]:
    producer = AIOKafkaProducer(**infra.kafka_options("draft-api"))
    await producer.start()
    yield Kafka(infra.kafka_options("admin"), producer)
    await producer.stop()


async def outbox_count(engine: AsyncEngine, topic: str, key: str) -> int:
    """Events the service committed for a key (what its relay publishes, exactly)."""
    found = await rows(
        engine,
        "SELECT count(*) AS n FROM export.outbox WHERE topic = :t AND key = :k",
        t=topic,
        k=key,
    )
    return int(found[0]["n"])


def event_data(envelope: Envelope) -> dict[str, Any]:
    return dict(json.loads(envelope.data))


def free_port() -> int:
    """A port nobody listens on now (the offset ports may be taken by client sockets)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServiceProcess:
    """export-service as a deployment runs it: `serve`, `relay`, `consume` and two
    `worker`s, each `python -m export_service <role>` in a process group of its own on a
    free port; `url` is the HTTP API's."""

    ROLES = ("serve", "relay", "consume", "worker", "worker")

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.ports = [free_port() for _ in self.ROLES]
        self.env = {**os.environ, **env}
        self.url = f"http://127.0.0.1:{self.ports[0]}"
        self.role_urls = [f"http://127.0.0.1:{port}" for port in self.ports]
        self.log = log
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.processes = [
                subprocess.Popen(
                    [sys.executable, "-m", "export_service", role],
                    env={**self.env, "HTTP_PORT": str(port)},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                for role, port in zip(self.ROLES, self.ports, strict=True)
            ]

    async def ready(self) -> bool:
        """Every process answers /readyz with 200."""
        return all([await ready(url) for url in self.role_urls])

    def cpu_seconds(self) -> float:
        """User + system CPU time all its processes have used so far."""
        total = 0.0
        for process in self.processes:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes = []


async def ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{url}/readyz", timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False
