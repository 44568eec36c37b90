"""4. Audit ingest: events/s from topic to committed audit_log rows, vs Postgres COPY.

Events of one fresh organisation (the worst case for the per-org hash chain) are
produced straight to `draft.created`; the clock runs from the first send to the
moment the last row is visible. The anchor COPYs the same number of rows of the same
shape into a copy of the table (same indexes).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from orderflow_shared.contracts.events import DraftCreatedV1
from orderflow_shared.contracts.services import Service, source_for
from orderflow_shared.messaging.envelope import Envelope
from orderflow_shared.messaging.kafka import make_idempotent_producer
from psycopg.types.json import Jsonb

from tests.bench.common import Bench, wait_until

SCRATCH = "bench_audit"


MANY_ORGS = 50


def _envelopes(org: str, count: int, orgs: int = 1) -> list[Envelope]:
    """`count` events; with orgs > 1, spread round-robin over `org`-0 .. `org`-(orgs-1)."""
    out = []
    for i in range(count):
        draft_id = uuid.uuid4()
        data = DraftCreatedV1(
            draft_id=draft_id,
            customer_id="C-BENCH",
            external_ref="B",
            line_count=1,
            created_at=datetime.now(UTC),
        )
        out.append(
            Envelope.wrap(
                data,
                source=source_for(Service.DRAFT_API),  # draft.* belongs to draft-api
                subject=str(draft_id),
                org_id=org if orgs == 1 else f"{org}-{i % orgs}",
                actor_id="bench",
            )
        )
    return out


async def _produce(bench: Bench, envelopes: list[Envelope]) -> None:
    producer = make_idempotent_producer(bench.cfg.kafka_options("admin"), client_id="bench-audit")
    await producer.start()
    try:
        futures = [
            await producer.send(
                env.topic, value=env.data, key=env.key.encode(), headers=env.kafka_headers()
            )
            for env in envelopes
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _count(bench: Bench, org: str, orgs: int = 1) -> int:
    if orgs == 1:
        query, arg = "SELECT count(*) FROM audit.audit_log WHERE org_id = %s", org
    else:
        query, arg = "SELECT count(*) FROM audit.audit_log WHERE org_id LIKE %s", f"{org}-%"
    return int(bench.sql(query, (arg,))[0][0])


def _copy_anchor(bench: Bench, envelopes: list[Envelope]) -> dict[str, Any]:
    bench.sql(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")
    bench.sql(f"CREATE SCHEMA {SCRATCH}")
    bench.sql(f"CREATE TABLE {SCRATCH}.audit_log (LIKE audit.audit_log INCLUDING ALL)")
    try:
        prev = "0" * 64
        rows = []
        for env in envelopes:
            data = json.loads(env.data)
            digest = hashlib.sha256((prev + json.dumps(data, sort_keys=True)).encode())
            rows.append(
                (
                    env.id,
                    env.org_id,
                    "DRAFT_CREATED",
                    "draft_order",
                    env.subject,
                    env.actor_id,
                    env.time,
                    env.time,
                    env.topic,
                    Jsonb(data),
                    prev,
                    digest.hexdigest(),
                )
            )
            prev = digest.hexdigest()
        started = time.monotonic()
        with (
            bench.connect() as conn,
            conn.transaction(),
            conn.cursor().copy(
                f"COPY {SCRATCH}.audit_log (event_id, org_id, action, entity_type, entity_id,"
                " actor_user_id, occurred_at, created_at, source_topic, data, prev_hash, hash)"
                " FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)
        elapsed = time.monotonic() - started
    finally:
        bench.sql(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")
    return {"rows": len(rows), "rows_per_s": len(rows) / elapsed}


def _burst(bench: Bench, count: int, orgs: int) -> tuple[list[Envelope], dict[str, Any]]:
    org = f"bench-audit-{uuid.uuid4().hex[:8]}"
    envelopes = _envelopes(org, count, orgs)
    started = time.monotonic()
    asyncio.run(_produce(bench, envelopes))
    produced = time.monotonic() - started
    wait_until(
        lambda: _count(bench, org, orgs) >= count,
        timeout=600,
        what="audit rows of the burst",
        interval=0.05,
    )
    elapsed = time.monotonic() - started
    return envelopes, {
        "events": count,
        "orgs": orgs,
        "produce_s": produced,
        "seconds": elapsed,
        "events_per_s": count / elapsed,
    }


def run(bench: Bench) -> dict[str, Any]:
    """One organisation (every entry on one chain), then the same count over many."""
    count = 1_000 if bench.quick else 20_000
    envelopes, ingest = _burst(bench, count, 1)
    _, many = _burst(bench, count, MANY_ORGS)
    anchor = _copy_anchor(bench, envelopes)
    return {
        "ingest": ingest,
        "ingest_many_orgs": many,
        "anchor_copy": anchor,
        "ratio": ingest["events_per_s"] / anchor["rows_per_s"],
        "ratio_many_orgs": many["events_per_s"] / anchor["rows_per_s"],
    }
