"""The unit of work collects the events of the drafts it stored and writes them at commit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from draft_api.domain.events import DraftCreated, DraftValidated
from draft_api.domain.model import Actor, DraftOrder, NewLine

ACTOR = Actor(user_id="user-1", org_id="demo")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def new_draft() -> DraftOrder:
    line = NewLine("SKU-1", "Widget", Decimal("3"), "EA", Decimal("9.50"), "EUR")
    return DraftOrder.create(
        draft_id=uuid.uuid4(),
        actor=ACTOR,
        customer_id="C-1",
        external_ref="PO-1",
        lines=[line],
        now=NOW,
    )


async def test_events_of_a_stored_draft_are_written_at_commit_in_order(
    uow_factory: Any, store: Any
) -> None:
    draft = new_draft()
    async with uow_factory() as uow:
        await uow.drafts.add(draft)
        draft.validate(actor=ACTOR, external_ref_taken=False, now=NOW)
        await uow.drafts.save(draft)
        assert store.outbox == []  # nothing before the commit
        await uow.commit()
    assert [type(e) for e in store.outbox] == [DraftCreated, DraftValidated]
    assert {e.draft_id for e in store.outbox} == {draft.id}
    assert draft.events == []  # collected once: a second commit writes nothing again
    async with uow_factory() as uow:
        await uow.drafts.save(draft)
        await uow.commit()
    assert len(store.outbox) == 2


async def test_no_event_leaves_without_a_commit(uow_factory: Any, store: Any) -> None:
    async with uow_factory() as uow:
        await uow.drafts.add(new_draft())
    assert store.outbox == [] and store.drafts == {}


async def test_events_of_a_draft_never_stored_stay_with_it(uow_factory: Any, store: Any) -> None:
    draft = new_draft()
    async with uow_factory() as uow:
        await uow.commit()
    assert store.outbox == []
    assert [type(e) for e in draft.events] == [DraftCreated]
