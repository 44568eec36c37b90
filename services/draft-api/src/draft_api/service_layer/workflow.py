"""Validate and approve: the steps before a draft may be pushed."""

from __future__ import annotations

import uuid

from orderflow_shared.preconditions import Preconditions

from draft_api.domain.model import Actor, DraftOrder
from draft_api.service_layer.clock import utcnow
from draft_api.service_layer.drafts import change_draft
from draft_api.service_layer.ports import UnitOfWork


async def validate_draft(
    uow: UnitOfWork, actor: Actor, draft_id: uuid.UUID, *, expect: Preconditions | None = None
) -> DraftOrder:
    async def validate(draft: DraftOrder) -> None:
        taken = bool(draft.external_ref) and await uow.drafts.external_ref_taken(
            actor.org_id, draft.external_ref or "", exclude=draft.id
        )
        draft.validate(actor=actor, external_ref_taken=taken, now=utcnow())

    return await change_draft(uow, actor, draft_id, validate, expect=expect)


async def approve_draft(
    uow: UnitOfWork, actor: Actor, draft_id: uuid.UUID, *, expect: Preconditions | None = None
) -> DraftOrder:
    async def approve(draft: DraftOrder) -> None:
        org = await uow.org_settings.get(actor.org_id)
        draft.approve(actor=actor, now=utcnow(), four_eyes=org.four_eyes)

    return await change_draft(uow, actor, draft_id, approve, expect=expect)
