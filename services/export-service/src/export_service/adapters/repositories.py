"""SQLAlchemy repositories of ERP connections and exports (every query org-scoped or by id)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import fields
from datetime import datetime
from typing import Any

from orderflow_shared.contracts import OrderSnapshot
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from export_service.adapters.orm import Tables
from export_service.adapters.secret_box import FernetSecretBox
from export_service.domain.circuit import Circuit, CircuitState
from export_service.domain.connection import (
    ConnectorType,
    ErpConnection,
    LocalSettings,
    SftpSettings,
)
from export_service.domain.export import WAITING_FOR_DROPZONE, Export, ExportStatus
from export_service.domain.renderers import FileFormat


def _columns(aggregate: Export | Circuit) -> dict[str, Any]:
    """An aggregate's fields by name, as the columns of the same names (not its events)."""
    return {f.name: getattr(aggregate, f.name) for f in fields(aggregate) if f.name != "events"}


def _fields_of(aggregate: type[Export | Circuit], row: Any) -> dict[str, Any]:
    """The row's columns named as the aggregate's fields (not its events)."""
    return {f.name: getattr(row, f.name) for f in fields(aggregate) if f.name != "events"}


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
            "csv_formula_guard": c.csv_formula_guard,
            "delivery_deadline_seconds": c.delivery_deadline_seconds,
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
            csv_formula_guard=bool(config.get("csv_formula_guard", True)),
            delivery_deadline_seconds=config.get("delivery_deadline_seconds"),
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

    async def list_all(self) -> list[ErpConnection]:
        """Every org's connections (for restating them on the topic; no request uses it)."""
        rows = await self._session.execute(select(self._t).order_by(self._t.c.created_at))
        return [self._load(row) for row in rows]

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
        self._circuits = tables.erp_connection_circuit

    @staticmethod
    def _row(e: Export) -> dict[str, Any]:
        return {
            **_columns(e),
            "status": e.status.value,
            "file_format": e.file_format.value if e.file_format else None,
            "snapshot": _storable(e.snapshot.model_dump(mode="json")),
            "trace_context": e.trace_context or None,
        }

    @staticmethod
    def _load(row: Any) -> Export:
        values = _fields_of(Export, row)
        values.update(
            status=ExportStatus(row.status),
            file_format=FileFormat(row.file_format) if row.file_format else None,
            snapshot=OrderSnapshot.model_validate(row.snapshot),
        )
        return Export(**values)

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
        for fixed in ("id", "draft_order_id", "org_id", "snapshot", "created_at", "trace_context"):
            del values[fixed]
        await self._session.execute(
            update(self._t).where(self._t.c.id == export.id).values(**values)
        )

    async def save_claimed(self, exports: list[Export]) -> None:
        if not exports:
            return
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

    async def lock_claims(self) -> None:
        """Serialise claims of all workers until the transaction ends, so the in-flight
        count per connection that a claim reads is not raced by another claim."""
        await self._session.execute(select(func.pg_advisory_xact_lock(_CLAIM_LOCK)))

    async def lock_due(self, now: datetime, limit: int, per_connection: int) -> list[Export]:
        """Due exports of connections whose circuit is closed, oldest due first, at most
        `per_connection` in flight per connection (counting those already delivering):
        a connection with a backlog takes its share and the others still get theirs."""
        if limit <= 0:
            return []
        ids = list(
            (
                await self._session.execute(
                    _DUE_SQL, {"now": now, "bound": per_connection, "limit": limit}
                )
            ).scalars()
        )
        return await self._lock_ids(ids)

    async def _lock_ids(self, ids: list[uuid.UUID]) -> list[Export]:
        if not ids:
            return []
        t = self._t
        found = await self._session.execute(
            select(t).where(t.c.id.in_(ids)).with_for_update(skip_locked=True)
        )
        order = {export_id: n for n, export_id in enumerate(ids)}
        exports = [self._load(row) for row in found]
        return sorted(exports, key=lambda e: order[e.id])

    async def lock_next_waiting(self, connection_id: uuid.UUID, now: datetime) -> Export | None:
        """The oldest export of a connection that waits (PENDING, or DELIVERING under
        an expired lease), row-locked: the probe of an open circuit."""
        t = self._t
        waiting = (t.c.status == ExportStatus.PENDING.value) | (
            (t.c.status == ExportStatus.DELIVERING.value) & (t.c.lease_expires_at <= now)
        )
        row = (
            await self._session.execute(
                select(t)
                .where(t.c.connection_id == connection_id, waiting)
                .order_by(t.c.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
        ).first()
        return self._load(row) if row else None

    async def lock_unannounced_behind_open_circuits(self, limit: int) -> list[Export]:
        """PENDING exports of connections whose circuit is not closed that do not yet
        say they wait for the dropzone (they came, or sat untried, while it opened),
        row-locked, skipping rows another worker holds."""
        t, c = self._t, self._circuits
        rows = await self._session.execute(
            select(t)
            .join(c, c.c.connection_id == t.c.connection_id)
            .where(
                c.c.state != CircuitState.CLOSED.value,
                t.c.status == ExportStatus.PENDING.value,
                t.c.error_json.is_(None)
                | (t.c.error_json["reason"].astext.is_distinct_from(WAITING_FOR_DROPZONE)),
            )
            .order_by(t.c.created_at)
            .limit(limit)
            .with_for_update(of=t, skip_locked=True)
        )
        return [self._load(row) for row in rows]

    async def lock_overdue(self, now: datetime, limit: int) -> list[Export]:
        """PENDING exports whose deadline has passed, row-locked."""
        t = self._t
        found = await self._session.execute(
            select(t)
            .where(t.c.status == ExportStatus.PENDING.value, t.c.deliver_by <= now)
            .order_by(t.c.deliver_by)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [self._load(row) for row in found]

    async def backlog(self) -> dict[str, tuple[int, datetime]]:
        rows = await self._session.execute(_BACKLOG_SQL)
        return {str(status): (int(n), oldest) for status, n, oldest in rows if n}


#: one branch per status, so each reads its partial index
_BACKLOG_SQL = text(
    """
    SELECT 'PENDING', count(*), min(created_at) FROM export.erp_export
    WHERE status = 'PENDING'
    UNION ALL
    SELECT 'DELIVERING', count(*), min(created_at) FROM export.erp_export
    WHERE status = 'DELIVERING'
    """
)

#: advisory lock key of the claim step (one per database: all workers take it)
_CLAIM_LOCK = 0x6F726465_72666C6F  # "orderflo"

_DUE_SQL = text(
    """
    WITH inflight AS (
        SELECT connection_id, count(*) AS busy FROM export.erp_export
        WHERE status = 'DELIVERING' AND lease_expires_at > :now
        GROUP BY connection_id
    ), candidates AS (
        SELECT id, connection_id, next_attempt_at AS due_at FROM export.erp_export
        WHERE status = 'PENDING' AND next_attempt_at <= :now
        UNION ALL
        SELECT id, connection_id, lease_expires_at FROM export.erp_export
        WHERE status = 'DELIVERING' AND lease_expires_at <= :now
    ), ranked AS (
        SELECT c.id, c.connection_id, c.due_at, coalesce(i.busy, 0) AS busy,
               row_number() OVER (PARTITION BY c.connection_id ORDER BY c.due_at) AS rank
        FROM candidates c
        LEFT JOIN inflight i ON i.connection_id = c.connection_id
        WHERE NOT EXISTS (
            SELECT 1 FROM export.erp_connection_circuit k
            WHERE k.connection_id = c.connection_id AND k.state <> 'closed'
        )
    )
    SELECT id FROM ranked
    WHERE connection_id IS NULL OR rank + busy <= :bound
    ORDER BY due_at
    LIMIT :limit
    """
)


class SqlCircuitRepository:
    """Circuits of connections; a connection without a row is closed."""

    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        self._session = session
        self._t = tables.erp_connection_circuit

    @staticmethod
    def _load(row: Any) -> Circuit:
        return Circuit(**{**_fields_of(Circuit, row), "state": CircuitState(row.state)})

    @staticmethod
    def _row(c: Circuit) -> dict[str, Any]:
        return {**_columns(c), "state": c.state.value}

    async def get(self, org_id: str, connection_id: uuid.UUID) -> Circuit | None:
        row = (
            await self._session.execute(
                select(self._t).where(
                    self._t.c.connection_id == connection_id, self._t.c.org_id == org_id
                )
            )
        ).first()
        return self._load(row) if row else None

    async def get_many(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Circuit]:
        wanted = list(ids)
        if not wanted:
            return {}
        rows = await self._session.execute(
            select(self._t).where(self._t.c.connection_id.in_(wanted))
        )
        return {row.connection_id: self._load(row) for row in rows}

    async def lock_many(
        self, connections: dict[uuid.UUID, str], now: datetime
    ) -> dict[uuid.UUID, Circuit]:
        """The circuits of these connections (id -> org), created closed when missing,
        row-locked in id order (two recorders never deadlock)."""
        if not connections:
            return {}
        ids = sorted(connections)
        fresh = [self._row(Circuit.closed(i, connections[i], now)) for i in ids]
        await self._session.execute(
            insert(self._t).on_conflict_do_nothing(index_elements=["connection_id"]), fresh
        )
        rows = await self._session.execute(
            select(self._t)
            .where(self._t.c.connection_id.in_(ids))
            .order_by(self._t.c.connection_id)
            .with_for_update()
        )
        return {row.connection_id: self._load(row) for row in rows}

    async def lock_probe_due(self, now: datetime, limit: int) -> list[Circuit]:
        """Circuits due for a probe (open past the probe time, or half-open with the
        probe's lease expired), row-locked, skipping those another worker holds."""
        t = self._t
        due = ((t.c.state == CircuitState.OPEN.value) & (t.c.next_probe_at <= now)) | (
            (t.c.state == CircuitState.HALF_OPEN.value) & (t.c.probe_expires_at <= now)
        )
        rows = await self._session.execute(
            select(t).where(due).order_by(t.c.since).limit(limit).with_for_update(skip_locked=True)
        )
        return [self._load(row) for row in rows]

    async def save(self, circuit: Circuit) -> None:
        values = self._row(circuit)
        del values["connection_id"], values["org_id"]
        await self._session.execute(
            update(self._t).where(self._t.c.connection_id == circuit.connection_id).values(**values)
        )

    async def count_by_state(self) -> dict[str, int]:
        rows = await self._session.execute(
            select(self._t.c.state, func.count()).group_by(self._t.c.state)
        )
        return {str(state): int(n) for state, n in rows}
