"""Routes of /draft-settings: the organisation's draft settings (the four-eyes rule)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from draft_api.domain.model import Actor
from draft_api.domain.org_settings import OrgSettings
from draft_api.entrypoints.http.dependencies import JsonBody, Reader, ServicesDep, _as_actor
from draft_api.entrypoints.http.errors import responses
from draft_api.entrypoints.http.schemas import DraftSettingsIn, DraftSettingsOut
from draft_api.service_layer import org_settings

settings_router = APIRouter(prefix="/draft-settings", tags=["draft settings"])
Admin = Annotated[Actor, Depends(_as_actor("admin"))]


def _out(settings: OrgSettings) -> DraftSettingsOut:
    return DraftSettingsOut.model_validate(settings, from_attributes=True)


@settings_router.get(
    "",
    response_model=DraftSettingsOut,
    responses=responses(),
    summary="The organisation's draft settings (four-eyes rule)",
    operation_id="get_draft_settings",
)
async def get_draft_settings(actor: Reader, services: ServicesDep) -> DraftSettingsOut:
    return _out(await org_settings.get_settings(services.uow_factory(), actor))


@settings_router.put(
    "",
    response_model=DraftSettingsOut,
    dependencies=[JsonBody],
    responses=responses(413, 415, 422),
    summary="Turn the four-eyes rule on or off (role admin); idempotent",
    operation_id="set_draft_settings",
)
async def set_draft_settings(
    body: DraftSettingsIn, actor: Admin, services: ServicesDep
) -> DraftSettingsOut:
    return _out(
        await org_settings.set_four_eyes(services.uow_factory(), actor, four_eyes=body.four_eyes)
    )
