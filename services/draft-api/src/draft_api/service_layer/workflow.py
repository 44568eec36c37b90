"""Validate and approve: the steps before a draft may be pushed."""

from __future__ import annotations

import uuid

from orderflow_shared.preconditions import Preconditions

from draft_api.domain import errors
from draft_api.domain.model import Actor, DraftOrder
from draft_api.service_layer.clock import utcnow
from draft_api.service_layer.drafts import check_preconditions
from draft_api.service_layer.ports import UnitOfWork


async def validate_draft(
    uow: UnitOfWork, actor: Actor, draft_id: uuid.UUID, *, expect: Preconditions | None = None
) -> DraftOrder:
    async with uow:
        draft = await _locked(uow, actor, draft_id)
        check_preconditions(draft, expect)
        taken = bool(draft.external_ref) and await uow.drafts.external_ref_taken(
            actor.org_id, draft.external_ref or "", exclude=draft.id
        )
        draft.validate(actor=actor, external_ref_taken=taken, now=utcnow())
        await uow.drafts.save(draft)
        await uow.commit()
    return draft


async def approve_draft(
    uow: UnitOfWork, actor: Actor, draft_id: uuid.UUID, *, expect: Preconditions | None = None
) -> DraftOrder:
    async with uow:
        draft = await _locked(uow, actor, draft_id)
        check_preconditions(draft, expect)
        org = await uow.org_settings.get(actor.org_id)
        draft.approve(actor=actor, now=utcnow(), four_eyes=org.four_eyes)
        await uow.drafts.save(draft)
        await uow.commit()
    return draft


async def _locked(uow: UnitOfWork, actor: Actor, draft_id: uuid.UUID) -> DraftOrder:
    draft = await uow.drafts.get(actor.org_id, draft_id, lock=True)
    if draft is None:
        raise errors.DraftNotFound()
    return draft
