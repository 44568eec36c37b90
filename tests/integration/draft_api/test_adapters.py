"""The Postgres repository and the Redis cache on their own, against the real servers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from draft_api.adapters.housekeeping import purge
from draft_api.adapters.orm import build_tables
from draft_api.adapters.redis_cache import RedisIdempotencyCache, cache_key
from draft_api.adapters.unit_of_work import SqlAlchemyUnitOfWork
from draft_api.domain import errors
from draft_api.domain.model import Actor, DraftOrder, NewLine
from draft_api.service_layer.ports import CacheState
from orderflow_shared.db import make_engine, make_session_factory
from redis.asyncio import Redis
from sqlalchemy import event, text

ACTOR = Actor(user_id="u-1", org_id=f"org-{uuid.uuid4().hex[:8]}")
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture
async def uow_factory(db: Any) -> Any:
    engine = make_engine(db.url, pool_size=4)
    tables = build_tables()
    session_factory = make_session_factory(engine)
    yield lambda: SqlAlchemyUnitOfWork(session_factory, tables)
    await engine.dispose()


@pytest.fixture
async def redis(infra: Any) -> Any:
    client = Redis.from_url(infra.redis_url)
    yield client
    await client.aclose()


def new_draft() -> DraftOrder:
    return DraftOrder.create(
        draft_id=uuid.uuid4(),
        actor=ACTOR,
        customer_id="C-9",
        external_ref=None,
        lines=[
            NewLine("A", "first", Decimal("1.5"), "KGM", Decimal("2.25"), "EUR"),
            NewLine("B", "second", Decimal("3"), "EA", Decimal("0.10"), "EUR"),
        ],
        now=NOW,
    )


async def test_a_draft_round_trips_with_lines_attempts_and_issues(uow_factory: Any) -> None:
    draft = new_draft()
    async with uow_factory() as uow:
        await uow.drafts.add(draft)
        await uow.commit()
    async with uow_factory() as uow:
        loaded = await uow.drafts.get(ACTOR.org_id, draft.id, lock=True)
        assert loaded is not None
        loaded.validate(actor=ACTOR, external_ref_taken=False, now=NOW)
        loaded.approve(actor=ACTOR, now=NOW)
        loaded.push(actor=ACTOR, export_id=uuid.uuid4(), has_active_connector=True, now=NOW)
        await uow.drafts.save(loaded)
        await uow.commit()
    async with uow_factory() as uow:
        again = await uow.drafts.get(ACTOR.org_id, draft.id)
    assert again is not None
    assert again.lines == draft.lines
    assert again.total == Decimal("3.6750")
    assert again.status.value == "PUSHING" and again.version == 1
    assert again.attempts == loaded.attempts
    assert (again.approved_by_user_id, again.approved_at) == ("u-1", NOW)


async def test_a_stale_version_is_a_concurrent_modification(uow_factory: Any) -> None:
    draft = new_draft()
    async with uow_factory() as uow:
        await uow.drafts.add(draft)
        await uow.commit()
    async with uow_factory() as uow:
        first = await uow.drafts.get(ACTOR.org_id, draft.id)
    async with uow_factory() as uow:
        second = await uow.drafts.get(ACTOR.org_id, draft.id)
    assert first is not None and second is not None
    async with uow_factory() as uow:
        first.edit(now=NOW, customer_id="C-first")
        await uow.drafts.save(first)
        await uow.commit()
    async with uow_factory() as uow:
        second.edit(now=NOW, customer_id="C-second")
        with pytest.raises(errors.ConcurrentModification):
            await uow.drafts.save(second)
    async with uow_factory() as uow:
        stored = await uow.drafts.get(ACTOR.org_id, draft.id)
    assert stored is not None and stored.customer_id == "C-first"


async def test_nothing_is_kept_without_commit(uow_factory: Any, db: Any) -> None:
    draft = new_draft()
    async with uow_factory() as uow:
        await uow.drafts.add(draft)
    assert db.scalar("SELECT count(*) FROM draft.draft_order WHERE id = %s", (draft.id,)) == 0
    assert db.scalar("SELECT count(*) FROM draft.outbox WHERE key = %s", (str(draft.id),)) == 0


async def test_cache_marks_in_flight_then_remembers_the_export_id(redis: Any) -> None:
    cache = RedisIdempotencyCache(redis, ttl=timedelta(hours=24))
    draft_id, key, export_id = uuid.uuid4(), "k-" + uuid.uuid4().hex, uuid.uuid4()

    held = await cache.acquire(draft_id, key)
    assert held.state is CacheState.ACQUIRED and held.token
    assert 0 < await redis.ttl(cache_key(draft_id, key)) <= 30
    assert (await cache.acquire(draft_id, key)).state is CacheState.IN_FLIGHT

    await cache.remember(draft_id, key, export_id)
    assert await redis.get(f"idempotency:{draft_id}:{key}") == str(export_id).encode()
    assert 23 * 3600 < await redis.ttl(cache_key(draft_id, key)) <= 24 * 3600
    done = await cache.acquire(draft_id, key)
    assert (done.state, done.export_id) == (CacheState.DONE, export_id)


async def test_cache_release_only_removes_its_own_marker(redis: Any) -> None:
    cache = RedisIdempotencyCache(redis, ttl=timedelta(hours=1))
    draft_id, key = uuid.uuid4(), "k-" + uuid.uuid4().hex
    held = await cache.acquire(draft_id, key)
    await cache.release(draft_id, key, "in-flight:somebody-else")
    assert (await cache.acquire(draft_id, key)).state is CacheState.IN_FLIGHT
    assert held.token is not None
    await cache.release(draft_id, key, held.token)
    assert (await cache.acquire(draft_id, key)).state is CacheState.ACQUIRED


async def test_cache_says_unavailable_when_redis_is_unreachable() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    cache = RedisIdempotencyCache(dead, ttl=timedelta(hours=1))
    assert (await cache.acquire(uuid.uuid4(), "k")).state is CacheState.UNAVAILABLE
    await cache.remember(uuid.uuid4(), "k", uuid.uuid4())  # no error escapes
    await cache.release(uuid.uuid4(), "k", "in-flight:x")
    await dead.aclose()


async def test_housekeeping_purges_only_expired_keys_and_old_inbox_rows(db: Any) -> None:
    tables = build_tables()
    engine = make_engine(db.url, pool_size=2)
    org = f"org-{uuid.uuid4().hex[:8]}"
    for key, expires in (
        ("old", "now() - interval '1 hour'"),
        ("live", "now() + interval '1 hour'"),
    ):
        db.rows(
            "INSERT INTO draft.idempotency_key VALUES "
            f"(%s, %s, 'push', gen_random_uuid(), 'f', gen_random_uuid(), now(), {expires})",
            (org, key),
        )
    old_event, new_event = uuid.uuid4(), uuid.uuid4()
    db.rows(
        "INSERT INTO draft.inbox (consumer, event_id, applied_at) VALUES "
        "('draft-api', %s, now() - interval '30 days'), ('draft-api', %s, now())",
        (old_event, new_event),
    )
    try:
        await purge(engine, tables, now=datetime.now(UTC), inbox_retention=timedelta(days=14))
    finally:
        await engine.dispose()
    keys = db.rows("SELECT key FROM draft.idempotency_key WHERE org_id = %s", (org,))
    assert keys == [("live",)]
    kept = db.rows(
        "SELECT event_id FROM draft.inbox WHERE event_id IN (%s, %s)", (old_event, new_event)
    )
    assert kept == [(new_event,)]


async def _approved(uow_factory: Any) -> DraftOrder:
    draft = new_draft()
    draft.validate(actor=ACTOR, external_ref_taken=False, now=NOW)
    draft.approve(actor=ACTOR, now=NOW)
    async with uow_factory() as uow:
        await uow.drafts.add(draft)
        await uow.commit()
    return draft


async def test_lock_for_push_reads_what_a_push_decides_on(uow_factory: Any) -> None:
    draft = await _approved(uow_factory)
    first, second = uuid.uuid4(), uuid.uuid4()
    async with uow_factory() as uow:
        target = await uow.drafts.lock_for_push(ACTOR.org_id, draft.id)
        assert target is not None and target.earlier is None
        assert target.has_active_connector is False  # this org has none
        assert target.draft.lines == draft.lines and target.draft.attempts == []
        target.draft.push(actor=ACTOR, export_id=first, has_active_connector=True, now=NOW)
        target.draft.export_failed(first, error={"code": "X"}, now=NOW)
        target.draft.retry_push(actor=ACTOR, export_id=second, has_active_connector=True, now=NOW)
        await uow.drafts.save(target.draft)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.drafts.lock_for_push("another-org", draft.id) is None
        target = await uow.drafts.lock_for_push(ACTOR.org_id, draft.id, key="k-none")
        assert target is not None and target.earlier is None
        # of the attempts, only the latest (it numbers the next)
        assert [(a.erp_export_id, a.attempt) for a in target.draft.attempts] == [(second, 2)]
        assert target.draft.status.value == "PUSHING" and target.draft.version == 1


async def test_a_push_that_waited_for_the_lock_reads_what_its_holder_committed(
    uow_factory: Any, db: Any, eventually: Any
) -> None:
    """Joined rows are read at the statement's start, the locked row after the wait:
    the lines an edit committed meanwhile must be the ones the push sees."""
    draft = await _approved(uow_factory)
    holder = await psycopg.AsyncConnection.connect(db.libpq)
    try:
        await holder.execute(
            "UPDATE draft.draft_order SET version = version + 1 WHERE id = %s", (draft.id,)
        )
        await holder.execute(
            "UPDATE draft.draft_order_line SET sku = 'CHANGED' WHERE draft_id = %s", (draft.id,)
        )
        async with uow_factory() as uow:
            waiting = asyncio.create_task(uow.drafts.lock_for_push(ACTOR.org_id, draft.id))

            def blocked() -> bool:
                return bool(
                    db.scalar(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )

            try:
                await eventually(blocked, 30, "the push to wait for the draft's lock")
            finally:
                await holder.commit()  # the push goes on (never left waiting)
            target = await waiting
        assert target is not None
        assert target.draft.version == 1
        assert {line.sku for line in target.draft.lines} == {"CHANGED"}
    finally:
        await holder.close()


async def test_save_writes_only_the_columns_that_changed(uow_factory: Any, db: Any) -> None:
    draft = await _approved(uow_factory)
    engine = make_engine(db.url, pool_size=1)
    updates: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("UPDATE draft.draft_order "):
            updates.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with SqlAlchemyUnitOfWork(make_session_factory(engine), build_tables()) as uow:
            target = await uow.drafts.lock_for_push(ACTOR.org_id, draft.id)
            assert target is not None
            later = NOW + timedelta(minutes=1)
            target.draft.push(
                actor=ACTOR, export_id=uuid.uuid4(), has_active_connector=True, now=later
            )
            await uow.drafts.save(target.draft)
            await uow.commit()
    finally:
        await engine.dispose()
    (update,) = updates
    assigned = update.split(" SET ", 1)[1].split(" WHERE ", 1)[0]
    names = {part.split("=", 1)[0].strip() for part in assigned.split(", ")}
    assert names == {"status", "current_export_id", "updated_at", "version"}, update
    assert db.rows("SELECT status, version FROM draft.draft_order WHERE id = %s", (draft.id,)) == [
        ("PUSHING", 1)
    ]


async def test_a_push_rides_out_a_pooled_connection_that_postgres_dropped(
    uow_factory: Any, db: Any
) -> None:
    draft = await _approved(uow_factory)
    # as draft-api's engine: no ping before a checkout
    engine = make_engine(db.url, pool_size=1, pool_pre_ping=False)
    sessions = make_session_factory(engine)
    try:
        async with SqlAlchemyUnitOfWork(sessions, build_tables()) as uow:
            assert await uow.drafts.lock_for_push(ACTOR.org_id, draft.id) is not None
        dropped = db.rows(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert dropped  # the pooled connection was among them
        async with SqlAlchemyUnitOfWork(sessions, build_tables()) as uow:
            target = await uow.drafts.lock_for_push(ACTOR.org_id, draft.id)
        assert target is not None and target.draft.id == draft.id
    finally:
        await engine.dispose()


async def _pushing_twice(uow_factory: Any) -> tuple[DraftOrder, uuid.UUID, uuid.UUID]:
    """A draft whose first push failed and whose retry is in progress."""
    draft = await _approved(uow_factory)
    first, second = uuid.uuid4(), uuid.uuid4()
    async with uow_factory() as uow:
        target = await uow.drafts.lock_for_push(ACTOR.org_id, draft.id)
        assert target is not None
        target.draft.push(actor=ACTOR, export_id=first, has_active_connector=True, now=NOW)
        target.draft.export_failed(first, error={"code": "X"}, now=NOW)
        target.draft.retry_push(actor=ACTOR, export_id=second, has_active_connector=True, now=NOW)
        await uow.drafts.save(target.draft)
        await uow.commit()
    return draft, first, second


async def test_lock_for_outcomes_reads_only_the_named_attempts_of_the_orgs_drafts(
    uow_factory: Any,
) -> None:
    draft, _, second = await _pushing_twice(uow_factory)
    other, _, _ = await _pushing_twice(uow_factory)
    async with uow_factory() as uow:
        found = await uow.drafts.lock_for_outcomes(
            [
                (ACTOR.org_id, draft.id, second),
                (ACTOR.org_id, other.id, second),  # another draft's export: not its attempt
                ("another-org", draft.id, second),  # not that org's draft
                (ACTOR.org_id, uuid.uuid4(), second),  # no such draft
            ]
        )
    assert set(found) == {(ACTOR.org_id, draft.id), (ACTOR.org_id, other.id)}
    progress = found[(ACTOR.org_id, draft.id)]
    assert (progress.status.value, progress.version, progress.current_export_id) == (
        "PUSHING",
        1,
        second,
    )
    assert [(a.erp_export_id, a.attempt, a.status.value) for a in progress.attempts] == [
        (second, 2, "PENDING")
    ]
    assert found[(ACTOR.org_id, other.id)].attempts == []


async def test_write_progress_writes_a_batch_of_outcomes_in_one_statement(
    uow_factory: Any, db: Any
) -> None:
    draft, first, second = await _pushing_twice(uow_factory)
    other, other_first, other_second = await _pushing_twice(uow_factory)
    engine = make_engine(db.url, pool_size=1)
    writes: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith(("UPDATE", "INSERT", "WITH")):
            writes.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    later = NOW + timedelta(minutes=1)
    try:
        async with SqlAlchemyUnitOfWork(make_session_factory(engine), build_tables()) as uow:
            found = await uow.drafts.lock_for_outcomes(
                [(ACTOR.org_id, draft.id, second), (ACTOR.org_id, other.id, other_first)]
            )
            done = found[(ACTOR.org_id, draft.id)]
            assert done.export_sent(second, now=later) is True
            uow.drafts.save_progress(done)
            stale = found[(ACTOR.org_id, other.id)]
            assert stale.export_sent(other_first, now=later) is False  # a retry runs
            uow.drafts.save_progress(stale)
            await uow.drafts.write_progress()
            await uow.commit()
    finally:
        await engine.dispose()
    assert len(writes) == 1, writes
    rows = "SELECT status, version, updated_at FROM draft.draft_order WHERE id = %s"
    assert db.rows(rows, (draft.id,)) == [("PUSHED", 2, later)]
    assert db.rows(rows, (other.id,)) == [("PUSHING", 2, NOW)]
    attempts = (
        "SELECT erp_export_id, status, error_json, finished_at FROM draft.push_attempt"
        " WHERE draft_id = %s ORDER BY attempt"
    )
    assert db.rows(attempts, (draft.id,)) == [
        (first, "FAILED", {"code": "X"}, NOW),
        (second, "SENT", None, later),
    ]
    assert db.rows(attempts, (other.id,)) == [
        (other_first, "SENT", None, later),
        (other_second, "PENDING", None, None),
    ]


async def test_write_progress_refuses_a_draft_changed_since_it_was_read(
    uow_factory: Any, db: Any
) -> None:
    draft, _, second = await _pushing_twice(uow_factory)
    async with uow_factory() as uow:
        found = await uow.drafts.lock_for_outcomes([(ACTOR.org_id, draft.id, second)])
        progress = found[(ACTOR.org_id, draft.id)]
        progress.export_sent(second, now=NOW)
        uow.drafts.save_progress(progress)
        await uow.session.execute(  # another write to the draft since it was read
            text("UPDATE draft.draft_order SET version = version + 1 WHERE id = :id"),
            {"id": draft.id},
        )
        with pytest.raises(errors.ConcurrentModification):
            await uow.drafts.write_progress()
    assert db.rows("SELECT status, version FROM draft.draft_order WHERE id = %s", (draft.id,)) == [
        ("PUSHING", 1)
    ]
