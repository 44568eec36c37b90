"""SQLAlchemy repositories of ERP connections and exports (every query org-scoped or by id)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from orderflow_shared.contracts import OrderSnapshot
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from export_service.adapters.orm import Tables
from export_service.adapters.secret_box import FernetSecretBox
from export_service.domain.connection import (
    ConnectorType,
    ErpConnection,
    LocalSettings,
    SftpSettings,
)
from export_service.domain.export import Export, ExportStatus
from export_service.domain.renderers import FileFormat


def _storable(value: Any) -> Any:
    """Postgres text and jsonb cannot hold NUL characters: drop them."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


class SqlConnectionRepository:
    def __init__(self, session: AsyncSession, tables: Tables, box: FernetSecretBox) -> None:
        self._session = session
        self._t = tables.erp_connection
        self._box = box

    def _row(self, c: ErpConnection) -> dict[str, Any]:
        config: dict[str, Any] = {
            "file_format": c.file_format.value,
            "file_name_template": c.file_name_template,
        }
        if c.sftp is not None:
            config.update(
                host=c.sftp.host,
                port=c.sftp.port,
                username=c.sftp.username,
                remote_directory=c.sftp.remote_directory,
                host_key_fingerprint=c.sftp.host_key_fingerprint,
            )
        if c.local is not None:
            config.update(directory=c.local.directory)
        return {
            "id": c.id,
            "org_id": c.org_id,
            "name": c.name,
            "connector_type": c.connector_type.value,
            "is_active": c.is_active,
            "config": config,
            "secrets_ciphertext": self._box.seal(c.secrets),
            "created_at": c.created_at,
            "updated_at": c.updated_at,
        }

    def _load(self, row: Any) -> ErpConnection:
        config = dict(row.config)
        kind = ConnectorType(row.connector_type)
        sftp = local = None
        if kind is ConnectorType.SFTP:
            sftp = SftpSettings(
                host=config["host"],
                port=int(config["port"]),
                username=config["username"],
                remote_directory=config["remote_directory"],
                host_key_fingerprint=config["host_key_fingerprint"],
            )
        else:
            local = LocalSettings(directory=config["directory"])
        return ErpConnection(
            id=row.id,
            org_id=row.org_id,
            name=row.name,
            connector_type=kind,
            is_active=row.is_active,
            file_format=FileFormat(config["file_format"]),
            file_name_template=config["file_name_template"],
            sftp=sftp,
            local=local,
            secrets=self._box.open(row.secrets_ciphertext),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    async def add(self, connection: ErpConnection) -> None:
        await self._session.execute(self._t.insert().values(**self._row(connection)))

    async def save(self, connection: ErpConnection) -> None:
        values = self._row(connection)
        del values["id"], values["org_id"], values["created_at"]
        await self._session.execute(
            update(self._t)
            .where(self._t.c.id == connection.id, self._t.c.org_id == connection.org_id)
            .values(**values)
        )

    async def get(self, org_id: str, connection_id: uuid.UUID) -> ErpConnection | None:
        row = (
            await self._session.execute(
                select(self._t).where(self._t.c.id == connection_id, self._t.c.org_id == org_id)
            )
        ).first()
        return self._load(row) if row else None

    async def list_for_org(self, org_id: str) -> list[ErpConnection]:
        rows = await self._session.execute(
            select(self._t).where(self._t.c.org_id == org_id).order_by(self._t.c.created_at)
        )
        return [self._load(row) for row in rows]

    async def active_for_org(self, org_id: str) -> ErpConnection | None:
        row = (
            await self._session.execute(
                select(self._t).where(self._t.c.org_id == org_id, self._t.c.is_active)
            )
        ).first()
        return self._load(row) if row else None

    async def get_many(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, ErpConnection]:
        wanted = list(ids)
        if not wanted:
            return {}
        rows = await self._session.execute(select(self._t).where(self._t.c.id.in_(wanted)))
        return {row.id: self._load(row) for row in rows}

    async def lock_org(self, org_id: str) -> None:
        key = func.hashtextextended(f"export.erp_connection:{org_id}", 0)
        await self._session.execute(select(func.pg_advisory_xact_lock(key)))


class SqlExportRepository:
    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        self._session = session
        self._t = tables.erp_export

    @staticmethod
    def _row(e: Export) -> dict[str, Any]:
        return {
            "id": e.id,
            "draft_order_id": e.draft_order_id,
            "org_id": e.org_id,
            "connection_id": e.connection_id,
            "attempt_no": e.attempt_no,
            "status": e.status.value,
            "attempts": e.attempts,
            "next_attempt_at": e.next_attempt_at,
            "file_format": e.file_format.value if e.file_format else None,
            "file_name": e.file_name,
            "export_storage_key": e.export_storage_key,
            "remote_path": e.remote_path,
            "checksum": e.checksum,
            "size_bytes": e.size_bytes,
            "error_json": e.error_json,
            "snapshot": _storable(e.snapshot.model_dump(mode="json")),
            "lease_owner": e.lease_owner,
            "lease_expires_at": e.lease_expires_at,
            "created_at": e.created_at,
            "sent_at": e.sent_at,
        }

    @staticmethod
    def _load(row: Any) -> Export:
        return Export(
            id=row.id,
            draft_order_id=row.draft_order_id,
            org_id=row.org_id,
            attempt_no=row.attempt_no,
            snapshot=OrderSnapshot.model_validate(row.snapshot),
            created_at=row.created_at,
            status=ExportStatus(row.status),
            connection_id=row.connection_id,
            file_format=FileFormat(row.file_format) if row.file_format else None,
            file_name=row.file_name,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            export_storage_key=row.export_storage_key,
            remote_path=row.remote_path,
            checksum=row.checksum,
            size_bytes=row.size_bytes,
            error_json=row.error_json,
            sent_at=row.sent_at,
            lease_owner=row.lease_owner,
            lease_expires_at=row.lease_expires_at,
        )

    async def add_many(self, exports: list[Export]) -> set[uuid.UUID]:
        if not exports:
            return set()
        # executemany ("insertmanyvalues"): batched like one multi-row INSERT, but the
        # statement is compiled once and cached whatever the batch size.
        statement = (
            insert(self._t).on_conflict_do_nothing(index_elements=["id"]).returning(self._t.c.id)
        )
        result = await self._session.execute(statement, [self._row(e) for e in exports])
        return set(result.scalars())

    async def save(self, export: Export) -> None:
        values = self._row(export)
        for fixed in ("id", "draft_order_id", "org_id", "snapshot", "created_at"):
            del values[fixed]
        await self._session.execute(
            update(self._t).where(self._t.c.id == export.id).values(**values)
        )

    async def save_claimed(self, exports: list[Export]) -> None:
        t = self._t
        statement = (
            update(t)
            .where(t.c.id == bindparam("b_id"))
            .values(
                status=bindparam("b_status"),
                attempts=bindparam("b_attempts"),
                lease_owner=bindparam("b_owner"),
                lease_expires_at=bindparam("b_expires"),
            )
        )
        params = [
            {
                "b_id": e.id,
                "b_status": e.status.value,
                "b_attempts": e.attempts,
                "b_owner": e.lease_owner,
                "b_expires": e.lease_expires_at,
            }
            for e in exports
        ]
        connection = await self._session.connection()
        await connection.execute(statement, params)

    async def save_if_leased(self, exports: list[Export], owner: str) -> set[uuid.UUID]:
        if not exports:
            return set()
        t = self._t
        held = set(
            (
                await self._session.execute(
                    select(t.c.id)
                    .where(
                        t.c.id.in_([e.id for e in exports]),
                        t.c.status == ExportStatus.DELIVERING.value,
                        t.c.lease_owner == owner,
                    )
                    .with_for_update()
                )
            ).scalars()
        )
        rows = [self._outcome_row(e) for e in exports if e.id in held]
        if rows:
            # one prepared UPDATE, executed for every row (psycopg pipelines executemany)
            connection = await self._session.connection()
            await connection.execute(self._outcome_update(), rows)
        return held

    _OUTCOME_FIELDS = (
        "status",
        "attempts",
        "next_attempt_at",
        "export_storage_key",
        "remote_path",
        "checksum",
        "size_bytes",
        "error_json",
        "sent_at",
        "lease_owner",
        "lease_expires_at",
    )

    def _outcome_update(self) -> Any:
        t = self._t
        return (
            update(t)
            .where(t.c.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in self._OUTCOME_FIELDS})
        )

    def _outcome_row(self, export: Export) -> dict[str, Any]:
        row = self._row(export)
        return {"b_id": export.id, **{f"b_{n}": row[n] for n in self._OUTCOME_FIELDS}}

    async def lock_due(self, now: datetime, limit: int) -> list[Export]:
        # Two index-backed scans (due PENDING rows by time, then expired leases) instead
        # of one OR that would sort every candidate on each claim.
        t = self._t
        pending = await self._session.execute(
            select(t)
            .where(t.c.status == ExportStatus.PENDING.value, t.c.next_attempt_at <= now)
            .order_by(t.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        found = [self._load(row) for row in pending]
        if len(found) < limit:
            expired = await self._session.execute(
                select(t)
                .where(t.c.status == ExportStatus.DELIVERING.value, t.c.lease_expires_at <= now)
                .order_by(t.c.lease_expires_at)
                .limit(limit - len(found))
                .with_for_update(skip_locked=True)
            )
            found.extend(self._load(row) for row in expired)
        return found
