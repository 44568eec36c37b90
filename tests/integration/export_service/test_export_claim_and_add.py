"""The consumer's inbox claim and export insert in one statement (`claim_and_add`), on
the real Postgres: exactly once, the first new request of an export id wins, a
redelivered event is never applied again, and a refused request is claimed but
never exported."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from export_service.adapters.orm import make_tables
from export_service.adapters.secret_box import FernetSecretBox
from export_service.adapters.unit_of_work import sql_uow_factory
from export_service.service_layer.exports import CONSUMER, PushRequest, record_push_requests
from orderflow_shared.contracts import DraftPushRequestedV1
from orderflow_shared.db import make_session_factory
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.export_service.conftest import make_settings, rows, snapshot

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def request(org_id: str, export_id: uuid.UUID, *, order_org: str | None = None) -> PushRequest:
    order = snapshot(order_org or org_id)
    data = DraftPushRequestedV1(
        draft_id=order.draft_id,
        erp_export_id=export_id,
        attempt=1,
        requested_at=NOW,
        order=order,
    )
    return PushRequest(uuid.uuid4(), org_id, data)


async def test_claim_and_add_applies_each_event_once_and_each_export_once(
    export_env: dict[str, str], db: Any
) -> None:
    settings = make_settings(export_env)
    engine = create_async_engine(settings.database_url)
    uow = sql_uow_factory(
        make_session_factory(engine),
        make_tables(),
        FernetSecretBox(settings.export_encryption_key.get_secret_value()),
    )
    org = f"claim-{uuid.uuid4().hex[:8]}"
    shared_id, other_id, refused_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    first = request(org, shared_id)
    second = request(org, shared_id)  # same export id, another event
    third = request(org, other_id)
    refused = request(org, refused_id, order_org="someone-else")
    try:
        await record_push_requests(uow(), [first, second, third, refused], lambda: NOW)
        stored = await rows(
            db,
            "SELECT id, draft_order_id FROM export.erp_export WHERE org_id = :org ORDER BY id",
            org=org,
        )
        assert {r["id"]: r["draft_order_id"] for r in stored} == {
            shared_id: first.data.draft_id,  # the first request of the id, not the second
            other_id: third.data.draft_id,
        }
        claimed = await rows(
            db,
            "SELECT event_id FROM export.inbox WHERE consumer = :c AND event_id = ANY(:ids)",
            c=CONSUMER,
            ids=[r.event_id for r in (first, second, third, refused)],
        )
        assert len(claimed) == 4  # the refused and the duplicate are claimed too

        # redelivered with a new event for an export already stored: nothing changes
        again = request(org, other_id)
        await record_push_requests(uow(), [third, again, first], lambda: NOW)
        after = await rows(
            db, "SELECT id, draft_order_id FROM export.erp_export WHERE org_id = :org", org=org
        )
        assert sorted(map(tuple, (r.values() for r in after))) == sorted(
            map(tuple, (r.values() for r in stored))
        )
        events = await rows(
            db,
            "SELECT count(*) AS n FROM export.outbox WHERE key = ANY(:keys)",
            keys=[
                str(k)
                for r in (first, second, third, refused, again)
                for k in (r.data.erp_export_id, r.data.draft_id)
            ],
        )
        assert events[0]["n"] == 2  # one event per export, none for the redeliveries
    finally:
        await engine.dispose()
