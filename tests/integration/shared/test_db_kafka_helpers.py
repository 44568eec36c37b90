"""db.py, kafka.py and the Alembic table helpers against the real servers."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from alembic.migration import MigrationContext
from alembic.operations import Operations
from orderflow_shared.contracts.topics import ALL_TOPICS, Topic
from orderflow_shared.db import db_reachable, make_engine
from orderflow_shared.messaging.inbox import (
    claim,
    claim_many,
    create_inbox_table,
    drop_inbox_table,
)
from orderflow_shared.messaging.kafka import ensure_topics, kafka_reachable
from orderflow_shared.messaging.outbox import (
    add_outbox_trace_context,
    create_outbox_table,
    drop_outbox_table,
    outbox_table,
)
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection

from .conftest import Backbone, Scratch


async def test_reachability_probes_tell_up_from_down(backbone: Backbone) -> None:
    assert await kafka_reachable(backbone.kafka)
    assert not await kafka_reachable({"bootstrap_servers": "127.0.0.1:9"}, timeout=1.0)
    engine = make_engine(backbone.dsn, pool_size=1)
    dead = make_engine("postgresql://nobody@127.0.0.1:9/none", pool_size=1)
    try:
        assert await db_reachable(engine)
        assert not await db_reachable(dead, timeout=2.0)
    finally:
        await engine.dispose()
        await dead.dispose()


async def test_the_database_probe_rides_out_a_pooled_connection_postgres_dropped(
    backbone: Backbone,
) -> None:
    # without pre-ping, the pooled connection of a Postgres restart fails once: /readyz
    # must not answer "unavailable" for it
    engine = make_engine(backbone.dsn, pool_size=1, pool_pre_ping=False)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        killer = make_engine(backbone.dsn, pool_size=1)
        async with killer.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await killer.dispose()
        assert await db_reachable(engine)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
    finally:
        await engine.dispose()


async def test_ensure_topics_is_idempotent_and_compacts_the_connection_topic(
    backbone: Backbone,
) -> None:
    await ensure_topics(backbone.kafka, 3, 1)
    assert await ensure_topics(backbone.kafka, 3, 1) == []
    admin = AIOKafkaAdminClient(**backbone.kafka)
    await admin.start()
    try:
        listed = set(await admin.list_topics())
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, Topic.ERP_CONNECTION_CHANGED)]
        )
    finally:
        await admin.close()
    assert {str(t) for t in ALL_TOPICS} <= listed
    configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
    assert configs["cleanup.policy"] == "compact"


async def test_ensure_topics_creates_the_missing_ones_with_the_partitions_asked(
    backbone: Backbone,
) -> None:
    name = f"it.shared.new.{uuid.uuid4().hex[:10]}"
    assert await ensure_topics(backbone.kafka, 4, 1, [name]) == [name]
    admin = AIOKafkaAdminClient(**backbone.kafka)
    await admin.start()
    try:
        [described] = await admin.describe_topics([name])
    finally:
        await admin.close()
    assert len(described["partitions"]) == 4


async def test_the_alembic_helpers_create_and_drop_the_tables(backbone: Backbone) -> None:
    schema = f"it_alembic_{uuid.uuid4().hex[:10]}"
    engine = make_engine(backbone.dsn, pool_size=1)

    def upgrade(conn: Connection) -> dict[str, list[str]]:
        ops = Operations(MigrationContext.configure(conn))
        create_outbox_table(ops, schema)
        add_outbox_trace_context(ops, schema)  # the services' later migrations
        create_inbox_table(ops, schema)
        inspector = inspect(conn)
        found: dict[str, list[str]] = {
            "tables": sorted(inspector.get_table_names(schema=schema)),
            "outbox_columns": [c["name"] for c in inspector.get_columns("outbox", schema=schema)],
            "indexes": [str(i["name"]) for i in inspector.get_indexes("outbox", schema=schema)],
        }
        drop_outbox_table(ops, schema)
        drop_inbox_table(ops, schema)
        found["after_drop"] = sorted(inspect(conn).get_table_names(schema=schema))
        return found

    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            found = await conn.run_sync(upgrade)
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        await engine.dispose()
    assert found["tables"] == ["inbox", "outbox"]
    assert found["outbox_columns"] == [
        "id",
        "event_id",
        "topic",
        "key",
        "headers",
        "payload",
        "created_at",
        "published_at",
        "trace_context",
    ]
    assert f"ix_{schema}_outbox_unpublished" in found["indexes"]
    assert found["after_drop"] == []
    # the declared table matches what the migration helper made
    assert [c.name for c in outbox_table(MetaData(), schema).columns] == found["outbox_columns"]


async def test_concurrent_claims_of_one_event_let_exactly_one_apply(scratch: Scratch) -> None:
    event_id = uuid.uuid4()
    results = await asyncio.gather(
        *(scratch.apply_once("racer", event_id, f"try-{n}") for n in range(8))
    )
    assert sorted(results) == [False] * 7 + [True]
    assert await scratch.count("SELECT count(*) FROM {s}.effect") == 1


async def test_claims_are_per_consumer(scratch: Scratch) -> None:
    event_id = uuid.uuid4()
    async with scratch.sessions.begin() as session:
        assert await claim(session, scratch.inbox, "consumer-a", event_id)
        assert await claim(session, scratch.inbox, "consumer-b", event_id)
        assert not await claim(session, scratch.inbox, "consumer-a", event_id)


async def test_claim_many_returns_only_the_new_ids(scratch: Scratch) -> None:
    seen, fresh = uuid.uuid4(), [uuid.uuid4() for _ in range(3)]
    async with scratch.sessions.begin() as session:
        assert await claim(session, scratch.inbox, "batcher", seen)
    async with scratch.sessions.begin() as session:
        new = await claim_many(session, scratch.inbox, "batcher", [seen, *fresh, fresh[0]])
    assert new == set(fresh)
    async with scratch.sessions.begin() as session:
        assert await claim_many(session, scratch.inbox, "batcher", [seen, *fresh]) == set()
        assert await claim_many(session, scratch.inbox, "batcher", []) == set()


async def test_topics_create_command_reads_the_kafka_settings(backbone: Backbone) -> None:
    env = {
        **os.environ,
        **backbone.kafka_env,
        "KAFKA_TOPIC_PARTITIONS": "2",
        "KAFKA_REPLICATION_FACTOR": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orderflow_shared",
        "topics",
        "create",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    assert out == b""
    assert b"created" in err
    admin = AIOKafkaAdminClient(**backbone.kafka)
    await admin.start()
    try:
        assert {str(t) for t in ALL_TOPICS} <= set(await admin.list_topics())
    finally:
        await admin.close()
