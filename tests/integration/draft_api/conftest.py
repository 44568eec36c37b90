"""draft-api in-process against the real Postgres, Redis and Kafka of the `infra` fixture.

Each module gets its own database (same cluster) so nothing here races the services of
a running `stack` (their relay, consumers and seed work on the `orderflow` database).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from draft_api.bootstrap import make_app
from draft_api.entrypoints.cli import migrate
from draft_api.settings import DraftApiSettings
from sqlalchemy.engine import make_url


class Database:
    """A throw-away database with the draft schema migrated, reached as superuser."""

    def __init__(self, infra: Any, name: str) -> None:
        self.name = name
        admin = make_url(infra.superuser_dsn)
        self.libpq = admin.set(database=name).render_as_string(hide_password=False)
        self.url = admin.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False
        )
        with psycopg.connect(infra.superuser_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')

    def rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        # search_path as the devstack sets it, so the quickstart's unqualified SQL works
        with psycopg.connect(
            self.libpq, autocommit=True, options="-c search_path=draft,public"
        ) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def scalar(self, sql: str, params: Any = None) -> Any:
        found = self.rows(sql, params)
        return found[0][0] if found else None


def settings_for(infra: Any, db: Database, **overrides: Any) -> DraftApiSettings:
    values: dict[str, Any] = {
        "orderflow_env": "test",
        "database_url": db.url,
        "migration_database_url": db.url,
        "redis_url": infra.redis_url,
        **infra.kafka_settings("draft-api"),
        "jwt_secret": infra.jwt_secret,
        "db_pool_size": 10,
    }
    values.update(overrides)
    return DraftApiSettings(**values)


@pytest.fixture(scope="module")
def db(infra: Any, request: pytest.FixtureRequest) -> Iterator[Database]:
    name = f"draft_it_{request.module.__name__.rsplit('.', 1)[-1]}"[:60]
    database = Database(infra, name)
    migrate(settings_for(infra, database))
    yield database


class Api:
    """An httpx client on the in-process app plus helpers to reach a draft's states."""

    def __init__(
        self, client: httpx.AsyncClient, infra: Any, db: Database, services: Any = None
    ) -> None:
        self.client = client
        self.services = services
        self.infra = infra
        self.db = db
        self.org = f"org-{uuid.uuid4().hex[:12]}"

    def headers(
        self,
        roles: tuple[str, ...] = ("operator", "approver", "viewer"),
        org: str | None = None,
        sub: str = "user-1",
    ) -> dict[str, str]:
        return self.infra.auth_headers(roles=roles, org=org or self.org, sub=sub)

    def connect_erp(self, active: bool = True, org: str | None = None) -> uuid.UUID:
        connection_id = uuid.uuid4()
        self.db.rows(
            "INSERT INTO draft.erp_connector VALUES (%s, %s, 'ERP', 'sftp_dropzone', %s, now())",
            (connection_id, org or self.org, active),
        )
        return connection_id

    async def create(self, **body: Any) -> dict[str, Any]:
        payload = {
            "customer_id": "C-1001",
            "external_ref": f"PO-{uuid.uuid4().hex[:8]}",
            "lines": [
                {
                    "sku": "SKU-1",
                    "description": "Widget",
                    "quantity": 3,
                    "unit": "EA",
                    "unit_price": "9.50",
                    "currency": "EUR",
                }
            ],
        }
        payload.update(body)
        response = await self.client.post("/draft-orders", json=payload, headers=self.headers())
        assert response.status_code == 201, response.text
        return response.json()

    async def ready(self) -> str:
        draft_id = (await self.create())["id"]
        response = await self.client.post(
            f"/draft-orders/{draft_id}/validate", headers=self.headers()
        )
        assert response.json()["status"] == "READY", response.text
        return str(draft_id)

    async def approved(self) -> str:
        draft_id = await self.ready()
        response = await self.client.post(
            f"/draft-orders/{draft_id}/approve", headers=self.headers(sub="boss-1")
        )
        assert response.status_code == 200, response.text
        return draft_id

    async def push(self, draft_id: str, key: str | None = None, retry: bool = False) -> Any:
        headers = self.headers()
        if key is not None:
            headers["Idempotency-Key"] = key
        path = "retry-push" if retry else "push"
        return await self.client.post(f"/draft-orders/{draft_id}/{path}", headers=headers)

    def push_events(self, draft_id: str) -> int:
        return int(
            self.db.scalar(
                "SELECT count(*) FROM draft.outbox WHERE topic = 'draft.push_requested' "
                "AND key = %s",
                (draft_id,),
            )
        )

    def attempts(self, draft_id: str) -> int:
        return int(
            self.db.scalar(
                "SELECT count(*) FROM draft.push_attempt WHERE draft_id = %s", (draft_id,)
            )
        )


@pytest.fixture
async def api(infra: Any, db: Database) -> AsyncIterator[Api]:
    app = make_app(settings_for(infra, db))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://draft-api") as client:
            yield Api(client, infra, db, app.state.container.services)


async def _eventually(
    condition: Callable[[], Any], within: float = 60.0, what: str = "condition"
) -> Any:
    """Poll `condition()` until truthy, yielding to the event loop; its value, or fail."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
def eventually() -> Callable[..., Any]:
    return _eventually


@pytest.fixture
def make_settings(infra: Any) -> Callable[..., DraftApiSettings]:
    return lambda db, **overrides: settings_for(infra, db, **overrides)
