"""Every inbox is purged by one shared function: rows past the retention go, in slices,
and the rows a redelivery could still need stay."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from orderflow_shared.messaging.inbox import claim_many, purge_inbox, purge_inbox_forever
from sqlalchemy import update

from .conftest import Scratch, wait_for


async def _claimed(scratch: Scratch, consumer: str, count: int, applied_at: datetime) -> None:
    ids = [uuid.uuid4() for _ in range(count)]
    async with scratch.sessions.begin() as session:
        assert await claim_many(session, scratch.inbox, consumer, ids) == set(ids)
        await session.execute(
            update(scratch.inbox)
            .where(scratch.inbox.c.event_id.in_(ids))
            .values(applied_at=applied_at)
        )


async def test_purge_deletes_the_rows_past_the_retention_in_slices(scratch: Scratch) -> None:
    now = datetime.now(UTC)
    await _claimed(scratch, "a", 25, now - timedelta(days=30))
    await _claimed(scratch, "b", 3, now - timedelta(days=20))
    await _claimed(scratch, "a", 4, now - timedelta(days=1))
    deleted = await purge_inbox(
        scratch.engine, scratch.inbox, older_than=now - timedelta(days=14), slice_size=7
    )
    assert deleted == 28  # four full slices of 7 and the rest
    assert await scratch.count("SELECT count(*) FROM {s}.inbox") == 4
    oldest = "SELECT count(*) FROM {s}.inbox WHERE applied_at < now() - interval '2 days'"
    assert await scratch.count(oldest) == 0
    again = await purge_inbox(scratch.engine, scratch.inbox, older_than=now - timedelta(days=14))
    assert again == 0


async def test_a_purged_event_id_can_be_claimed_again_and_a_kept_one_cannot(
    scratch: Scratch,
) -> None:
    now = datetime.now(UTC)
    old, recent = uuid.uuid4(), uuid.uuid4()
    async with scratch.sessions.begin() as session:
        await claim_many(session, scratch.inbox, "c", [old, recent])
        await session.execute(
            update(scratch.inbox)
            .where(scratch.inbox.c.event_id == old)
            .values(applied_at=now - timedelta(days=15))
        )
    assert await purge_inbox(scratch.engine, scratch.inbox, older_than=now - timedelta(days=14))
    async with scratch.sessions.begin() as session:
        assert await claim_many(session, scratch.inbox, "c", [old, recent]) == {old}


async def test_the_purge_loop_purges_until_stopped(scratch: Scratch) -> None:
    now = datetime.now(UTC)
    await _claimed(scratch, "d", 5, now - timedelta(days=40))
    stop = asyncio.Event()
    loop = asyncio.create_task(
        purge_inbox_forever(
            stop, scratch.engine, scratch.inbox, retention=timedelta(days=14), interval=0.05
        )
    )
    try:

        async def emptied() -> bool:
            return await scratch.count("SELECT count(*) FROM {s}.inbox") == 0

        await wait_for(emptied, "the loop's purge")
        await _claimed(scratch, "d", 2, now - timedelta(days=40))
        await wait_for(emptied, "the next round's purge")
    finally:
        stop.set()
    await asyncio.wait_for(loop, 10)  # ends promptly once stopped
    assert loop.done() and loop.exception() is None
