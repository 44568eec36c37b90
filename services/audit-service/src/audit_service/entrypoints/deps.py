"""What the routes depend on: the caller's roles and the service's container."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Protocol

from fastapi import Depends, Request
from orderflow_shared.auth import Principal, require_roles

from audit_service.service_layer.ports import UnitOfWork
from audit_service.settings import AuditSettings

AnyRole = Annotated[Principal, Depends(require_roles("viewer", "operator", "approver", "admin"))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]


class _Container(Protocol):
    """What the routes use of the service's container (bootstrap.Container)."""

    settings: AuditSettings

    @property
    def uow_factory(self) -> Callable[[], UnitOfWork]: ...


async def _container(request: Request) -> _Container:
    container: _Container = request.app.state.container
    return container


ContainerDep = Annotated[_Container, Depends(_container)]
