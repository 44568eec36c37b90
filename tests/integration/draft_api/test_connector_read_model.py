"""The connector read model from `erp_connection.changed` through the real broker: several
connections per org, records keyed by connection, org-keyed leftovers and a forged
far-future record, the same state after a replay from the beginning of the topic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from draft_api.bootstrap import make_app
from orderflow_shared.contracts import ErpConnectionChangedV1
from orderflow_shared.messaging.envelope import Envelope

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def change(
    org: str, connection_id: uuid.UUID, active: bool, at: datetime, *, key: str | None = None
) -> Envelope:
    return Envelope.wrap(
        ErpConnectionChangedV1(
            connection_id=connection_id,
            org_id=org,
            name="ERP",
            connector_type="sftp_dropzone",
            is_active=active,
            change="activated" if active else "deactivated",
            changed_at=at,
        ),
        source="/orderflow/export-service",
        subject=str(connection_id),
        org_id=org,
        actor_id="admin-1",
        key=key or str(connection_id),
    )


async def produce(infra: Any, envelopes: list[Envelope]) -> None:
    # export-service's credentials: only its principal may write this topic
    producer = AIOKafkaProducer(**infra.kafka_options("export-service"))
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send_and_wait(
                envelope.topic,
                envelope.data,
                key=envelope.key.encode(),
                headers=envelope.kafka_headers(),
            )
    finally:
        await producer.stop()


def read_model(db: Any, org: str) -> dict[uuid.UUID, bool]:
    return dict(
        db.rows(
            "SELECT connection_id, is_active FROM draft.erp_connector WHERE org_id = %s", (org,)
        )
    )


async def consume_until(
    db: Any, make_settings: Any, eventually: Any, org: str, expected: dict[uuid.UUID, bool]
) -> None:
    """Run draft-api's consumer in a group of its own (so from the topic's start)."""
    settings = make_settings(db, consumer_group_id=f"draft-api-replay-{uuid.uuid4().hex[:8]}")
    app = make_app(settings, roles=["consume"])
    async with app.router.lifespan_context(app):
        await eventually(lambda: read_model(db, org) == expected, what=f"read model {expected}")


async def test_the_read_model_is_right_for_several_connections_and_after_a_replay(
    infra: Any, db: Any, make_settings: Any, eventually: Any
) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    a, b = uuid.uuid4(), uuid.uuid4()
    await produce(
        infra,
        [
            change(org, a, True, T0),
            change(org, b, False, T0 + timedelta(seconds=1)),
            # activating b deactivates a (export-service writes both, each under its key)
            change(org, a, False, T0 + timedelta(seconds=2)),
            change(org, b, True, T0 + timedelta(seconds=2)),
            # a forged record far in the future, then the next real change (a activated)
            change(org, b, True, T0 + timedelta(days=365 * 100)),
            change(org, b, False, T0 + timedelta(seconds=3)),
            change(org, a, True, T0 + timedelta(seconds=3)),
            # a record left from when the topic was keyed by the org: must not overwrite
            change(org, a, False, T0 - timedelta(days=1), key=org),
        ],
    )
    expected = {a: True, b: False}
    await consume_until(db, make_settings, eventually, org, expected)

    # replay from the beginning with an empty read model and inbox: the same state
    db.rows("DELETE FROM draft.erp_connector WHERE org_id = %s", (org,))
    db.rows("DELETE FROM draft.inbox")
    await consume_until(db, make_settings, eventually, org, expected)


async def test_an_org_mismatch_is_dead_lettered_not_applied(
    infra: Any, db: Any, make_settings: Any, eventually: Any
) -> None:
    victim, attacker = f"org-{uuid.uuid4().hex[:8]}", f"org-{uuid.uuid4().hex[:8]}"
    target = uuid.uuid4()
    honest = change(victim, target, True, T0)
    forged_data = change(victim, target, False, T0 + timedelta(days=1))
    # the envelope says attacker, the data say victim
    forged = Envelope.wrap(
        forged_data.parse(),
        source=forged_data.source,
        subject=forged_data.subject,
        org_id=attacker,
        actor_id="mallory",
        key=str(target),
    )
    marker = uuid.uuid4()
    await produce(infra, [honest, forged, change(victim, marker, False, T0)])
    await consume_until(db, make_settings, eventually, victim, {target: True, marker: False})
    assert read_model(db, attacker) == {}
