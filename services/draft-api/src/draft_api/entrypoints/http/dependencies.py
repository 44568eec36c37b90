"""FastAPI dependencies: wiring from app.state, the caller as an Actor, JSON bodies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from orderflow_shared.auth import BearerCredentials, Principal, require_roles

from draft_api.domain.model import Actor
from draft_api.service_layer.ports import IdempotencyCache, UnitOfWorkFactory


@dataclass(frozen=True)
class Services:
    """What the routes need; built by the lifespan in bootstrap.py."""

    uow_factory: UnitOfWorkFactory
    cache: IdempotencyCache
    idempotency_ttl: timedelta


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.container.services
    return services


def _actor(principal: Principal) -> Actor:
    return Actor(user_id=principal.user_id, org_id=principal.org_id)


def _as_actor(*roles: str) -> Callable[..., Awaitable[Actor]]:
    """The caller with one of `roles` as an Actor: one dependency level over the bearer
    credentials (FastAPI resolves every level on every request)."""
    authorized = require_roles(*roles)

    async def dependency(request: Request, credentials: BearerCredentials) -> Actor:
        return _actor(await authorized(request, credentials))

    return dependency


async def require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise HTTPException(status_code=415, detail="Content-Type must be application/json")


ServicesDep = Annotated[Services, Depends(get_services)]
Reader = Annotated[Actor, Depends(_as_actor("viewer", "operator", "approver", "admin"))]
Operator = Annotated[Actor, Depends(_as_actor("operator"))]
Approver = Annotated[Actor, Depends(_as_actor("approver"))]
Pusher = Annotated[Actor, Depends(_as_actor("operator", "approver"))]
JsonBody = Depends(require_json)
