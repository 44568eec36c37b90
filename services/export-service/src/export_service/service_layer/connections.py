"""Use cases of ERP connections: create, update, (de)activate, list, get, test."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from orderflow_shared.preconditions import Preconditions, entity_tag

from export_service.domain.connection import (
    ConnectorType,
    ErpConnection,
    LocalSettings,
    Secrets,
    SftpSettings,
)
from export_service.domain.errors import (
    ConnectionNotFound,
    PreconditionFailed,
    TargetNotAllowed,
)
from export_service.domain.renderers import FileFormat
from export_service.service_layer.ports import (
    Clock,
    ConnectionReport,
    LocalDirectoryPolicy,
    Transports,
    UnitOfWork,
)


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
    csv_formula_guard: bool = True
    delivery_deadline_seconds: int | None = None


@dataclass(frozen=True)
class UpdateConnection:
    name: str | None = None
    file_format: FileFormat | None = None
    file_name_template: str | None = None
    sftp_changes: Mapping[str, Any] | None = None
    local: LocalSettings | None = None
    secrets: Secrets | None = None
    is_active: bool | None = None
    csv_formula_guard: bool | None = None
    delivery_deadline_seconds: int | None = None


def _settings(command: CreateConnection | UpdateConnection) -> dict[str, Any]:
    """The command's fields as the connection takes them: all but `is_active`, which
    the use case turns into an activation of its own."""
    return {f.name: getattr(command, f.name) for f in fields(command) if f.name != "is_active"}


class NoLocalDirectories:
    """The policy when none is given: no host directory may be a dropzone."""

    def refusal(self, org_id: str, directory: str) -> str | None:
        return "the local_dropzone connector is disabled here"


NO_LOCAL_DIRECTORIES = NoLocalDirectories()


def _confined(connection: ErpConnection, policy: LocalDirectoryPolicy) -> None:
    """A local directory must be one the org may use (TargetNotAllowed otherwise)."""
    if connection.connector_type is ConnectorType.LOCAL and connection.local is not None:
        refusal = policy.refusal(connection.org_id, connection.local.directory)
        if refusal:
            raise TargetNotAllowed(refusal)


async def create_connection(
    uow: UnitOfWork,
    actor: Actor,
    command: CreateConnection,
    clock: Clock,
    *,
    local_policy: LocalDirectoryPolicy = NO_LOCAL_DIRECTORIES,
) -> ErpConnection:
    async with uow:
        connection = ErpConnection.create(
            org_id=actor.org_id, now=clock(), actor_id=actor.user_id, **_settings(command)
        )
        _confined(connection, local_policy)
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
    *,
    local_policy: LocalDirectoryPolicy = NO_LOCAL_DIRECTORIES,
    expect: Preconditions | None = None,
) -> ErpConnection:
    async with uow:
        await uow.connections.lock_org(actor.org_id)
        connection = await _get(uow, actor, connection_id)
        _check_preconditions(connection, expect)
        connection.update(now=clock(), actor_id=actor.user_id, **_settings(command))
        _confined(connection, local_policy)
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
    uow: UnitOfWork,
    actor: Actor,
    connection_id: uuid.UUID,
    active: bool,
    clock: Clock,
    *,
    local_policy: LocalDirectoryPolicy = NO_LOCAL_DIRECTORIES,
    expect: Preconditions | None = None,
) -> ErpConnection:
    """Activate (deactivating the org's other active connection) or deactivate.

    Asked for the state it already has, the connection restates it on the topic, so an
    admin can set right a consumer's read model that something else led astray (e.g.
    a forged `erp_connection.changed`) by activating the connection again."""
    async with uow:
        await uow.connections.lock_org(actor.org_id)
        connection = await _get(uow, actor, connection_id)
        _check_preconditions(connection, expect)
        if active:
            _confined(connection, local_policy)
        if connection.is_active is active:
            connection.restate(actor.user_id)
        elif active:
            await _activate(uow, actor, connection, clock)
        else:
            connection.deactivate(clock(), actor.user_id)
            await uow.connections.save(connection)
        uow.publish(connection.events)
        await uow.commit()
    return connection


async def restate_connections(uow: UnitOfWork, actor_id: str | None = None) -> int:
    """Publish every connection's current state again, keyed by its id; how many."""
    async with uow:
        connections = await uow.connections.list_all()
        for connection in connections:
            connection.restate(actor_id)
            uow.publish(connection.events)
        await uow.commit()
    return len(connections)


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


def version_of(connection: ErpConnection) -> int:
    """The connection's version for its ETag: `updated_at` in microseconds (every change
    sets it)."""
    moment = connection.updated_at
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _check_preconditions(connection: ErpConnection, expect: Preconditions | None) -> None:
    """Under the org's lock (taken before the read), so nothing changes it until commit."""
    tag = entity_tag(version_of(connection))
    if expect is not None and not expect.holds(tag, connection.updated_at):
        raise PreconditionFailed()


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
