"""Use cases of ERP connections: create, update, (de)activate, list, get, test."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from export_service.domain.connection import (
    ConnectorType,
    ErpConnection,
    LocalSettings,
    Secrets,
    SftpSettings,
)
from export_service.domain.errors import ConnectionNotFound
from export_service.domain.renderers import FileFormat
from export_service.service_layer.ports import Clock, ConnectionReport, Transports, UnitOfWork


@dataclass(frozen=True)
class Actor:
    org_id: str
    user_id: str | None


@dataclass(frozen=True)
class CreateConnection:
    name: str
    connector_type: ConnectorType
    is_active: bool
    file_format: FileFormat
    file_name_template: str
    sftp: SftpSettings | None
    local: LocalSettings | None
    secrets: Secrets


@dataclass(frozen=True)
class UpdateConnection:
    name: str | None = None
    file_format: FileFormat | None = None
    file_name_template: str | None = None
    sftp_changes: Mapping[str, Any] | None = None
    local: LocalSettings | None = None
    secrets: Secrets | None = None
    is_active: bool | None = None


async def create_connection(
    uow: UnitOfWork, actor: Actor, command: CreateConnection, clock: Clock
) -> ErpConnection:
    async with uow:
        connection = ErpConnection.create(
            org_id=actor.org_id,
            name=command.name,
            connector_type=command.connector_type,
            file_format=command.file_format,
            file_name_template=command.file_name_template,
            sftp=command.sftp,
            local=command.local,
            secrets=command.secrets,
            now=clock(),
            actor_id=actor.user_id,
        )
        await uow.connections.add(connection)
        if command.is_active:
            await _activate(uow, actor, connection, clock)
        uow.publish(connection.events)
        await uow.commit()
    return connection


async def update_connection(
    uow: UnitOfWork,
    actor: Actor,
    connection_id: uuid.UUID,
    command: UpdateConnection,
    clock: Clock,
) -> ErpConnection:
    async with uow:
        await uow.connections.lock_org(actor.org_id)
        connection = await _get(uow, actor, connection_id)
        connection.update(
            now=clock(),
            actor_id=actor.user_id,
            name=command.name,
            file_format=command.file_format,
            file_name_template=command.file_name_template,
            sftp_changes=command.sftp_changes,
            local=command.local,
            secrets=command.secrets,
        )
        await uow.connections.save(connection)
        if command.is_active is True:
            await _activate(uow, actor, connection, clock)
        elif command.is_active is False:
            connection.deactivate(clock(), actor.user_id)
            await uow.connections.save(connection)
        uow.publish(connection.events)
        await uow.commit()
    return connection


async def set_active(
    uow: UnitOfWork, actor: Actor, connection_id: uuid.UUID, active: bool, clock: Clock
) -> ErpConnection:
    """Activate (deactivating the org's other active connection) or deactivate."""
    async with uow:
        await uow.connections.lock_org(actor.org_id)
        connection = await _get(uow, actor, connection_id)
        if active:
            await _activate(uow, actor, connection, clock)
        else:
            connection.deactivate(clock(), actor.user_id)
            await uow.connections.save(connection)
        uow.publish(connection.events)
        await uow.commit()
    return connection


async def list_connections(uow: UnitOfWork, actor: Actor) -> list[ErpConnection]:
    async with uow:
        return await uow.connections.list_for_org(actor.org_id)


async def get_connection(uow: UnitOfWork, actor: Actor, connection_id: uuid.UUID) -> ErpConnection:
    async with uow:
        return await _get(uow, actor, connection_id)


async def test_connection(
    uow: UnitOfWork, actor: Actor, connection_id: uuid.UUID, transports: Transports
) -> ConnectionReport:
    connection = await get_connection(uow, actor, connection_id)
    return await transports[connection.connector_type].check(connection)


async def _get(uow: UnitOfWork, actor: Actor, connection_id: uuid.UUID) -> ErpConnection:
    connection = await uow.connections.get(actor.org_id, connection_id)
    if connection is None:
        raise ConnectionNotFound()
    return connection


async def _activate(uow: UnitOfWork, actor: Actor, connection: ErpConnection, clock: Clock) -> None:
    await uow.connections.lock_org(actor.org_id)
    current = await uow.connections.active_for_org(actor.org_id)
    if current is not None and current.id != connection.id:
        current.deactivate(clock(), actor.user_id)
        await uow.connections.save(current)
        uow.publish(current.events)
        current.events.clear()
    connection.activate(clock(), actor.user_id)
    await uow.connections.save(connection)
