"""Create, edit, read and list drafts."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from orderflow_shared.preconditions import Preconditions, entity_tag

from draft_api.domain import errors
from draft_api.domain.model import Actor, DraftOrder, NewLine
from draft_api.service_layer.clock import utcnow
from draft_api.service_layer.ports import DraftQuery, DraftSummary, UnitOfWork


@dataclass(frozen=True)
class CreateDraft:
    customer_id: str
    external_ref: str | None
    lines: list[NewLine]


@dataclass(frozen=True)
class EditDraft:
    draft_id: uuid.UUID
    customer_id: str | None = None
    external_ref: str | None = None
    clear_external_ref: bool = False
    lines: list[NewLine] | None = None
    expect: Preconditions | None = None


async def create_draft(uow: UnitOfWork, actor: Actor, cmd: CreateDraft) -> DraftOrder:
    async with uow:
        draft = DraftOrder.create(
            draft_id=uuid.uuid4(),
            actor=actor,
            customer_id=cmd.customer_id,
            external_ref=cmd.external_ref,
            lines=cmd.lines,
            now=utcnow(),
        )
        await uow.drafts.add(draft)
        await uow.commit()
    return draft


async def edit_draft(uow: UnitOfWork, actor: Actor, cmd: EditDraft) -> DraftOrder:
    async def edit(draft: DraftOrder) -> None:
        draft.edit(
            now=utcnow(),
            customer_id=cmd.customer_id,
            external_ref=cmd.external_ref,
            clear_external_ref=cmd.clear_external_ref,
            lines=cmd.lines,
            edited_by=actor.user_id,
        )

    return await change_draft(uow, actor, cmd.draft_id, edit, expect=cmd.expect)


async def change_draft(
    uow: UnitOfWork,
    actor: Actor,
    draft_id: uuid.UUID,
    change: Callable[[DraftOrder], Awaitable[None]],
    *,
    expect: Preconditions | None = None,
) -> DraftOrder:
    """One step on one draft: under its row lock, after the request's preconditions
    held on it, `change` it, save and commit."""
    async with uow:
        draft = await _locked(uow, actor, draft_id, expect)
        await change(draft)
        await uow.drafts.save(draft)
        await uow.commit()
    return draft


async def get_draft(uow: UnitOfWork, actor: Actor, draft_id: uuid.UUID) -> DraftOrder:
    async with uow:
        draft = await uow.drafts.get(actor.org_id, draft_id)
    if draft is None:
        raise errors.DraftNotFound()
    return draft


async def list_drafts(
    uow: UnitOfWork, actor: Actor, query: DraftQuery
) -> tuple[list[DraftSummary], int]:
    """A page of summaries (counts and totals, no lines) and how many drafts match."""
    async with uow:
        return await uow.drafts.page(actor.org_id, query)


async def _locked(
    uow: UnitOfWork, actor: Actor, draft_id: uuid.UUID, expect: Preconditions | None = None
) -> DraftOrder:
    """The draft under its row lock, after the request's preconditions held on it (the
    lock keeps it as checked until the commit)."""
    draft = await uow.drafts.get(actor.org_id, draft_id, lock=True)
    if draft is None:
        raise errors.DraftNotFound()
    check_preconditions(draft, expect)
    return draft


def check_preconditions(draft: DraftOrder, expect: Preconditions | None) -> None:
    if expect is not None and not expect.holds(entity_tag(draft.version), draft.updated_at):
        raise errors.PreconditionFailed()
