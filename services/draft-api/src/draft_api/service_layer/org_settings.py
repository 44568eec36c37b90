"""Read and change an organisation's draft-api settings (the four-eyes rule)."""

from __future__ import annotations

from dataclasses import replace

from draft_api.domain.model import Actor
from draft_api.domain.org_settings import OrgSettings
from draft_api.service_layer.clock import utcnow
from draft_api.service_layer.ports import UnitOfWork


async def get_settings(uow: UnitOfWork, actor: Actor) -> OrgSettings:
    async with uow:
        return await uow.org_settings.get(actor.org_id)


async def set_four_eyes(uow: UnitOfWork, actor: Actor, *, four_eyes: bool) -> OrgSettings:
    async with uow:
        current = await uow.org_settings.get(actor.org_id)
        changed = replace(
            current, four_eyes=four_eyes, updated_by_user_id=actor.user_id, updated_at=utcnow()
        )
        await uow.org_settings.save(changed)
        await uow.commit()
    return changed
