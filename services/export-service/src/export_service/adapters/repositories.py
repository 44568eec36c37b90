"""SQLAlchemy repositories of ERP connections and exports (every query org-scoped or by id)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import fields
from datetime import datetime
from functools import cache
from typing import Any

from orderflow_shared.contracts import OrderSnapshot
from orderflow_shared.messaging.inbox import claim_sql
from sqlalchemy import Table, any_, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.dialects.postgresql.base import PGDialect
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
from export_service.service_layer.ports import ClaimChores
from export_service.service_layer.unit_of_work import new_exports


def _columns(aggregate: Export | Circuit) -> dict[str, Any]:
    """An aggregate's fields by name, as the columns of the same names (not its events)."""
    return {f.name: getattr(aggregate, f.name) for f in fields(aggregate) if f.name != "events"}


def _fields_of(aggregate: type[Export | Circuit], row: Any) -> dict[str, Any]:
    """The row's columns named as the aggregate's fields (not its events)."""
    return {f.name: getattr(row, f.name) for f in fields(aggregate) if f.name != "events"}


def _one_of(column: Any, values: list[Any]) -> Any:
    """`column = ANY(:array)`: one statement text whatever the number of values (an IN
    list expands to a new statement per length, which psycopg prepares again and again)."""
    return column == any_(bindparam(None, values, type_=ARRAY(column.type)))


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
        rows = await self._session.execute(select(self._t).where(_one_of(self._t.c.id, wanted)))
        return {row.id: self._load(row) for row in rows}

    async def lock_org(self, org_id: str) -> None:
        key = func.hashtextextended(f"export.erp_connection:{org_id}", 0)
        await self._session.execute(select(func.pg_advisory_xact_lock(key)))


class SqlExportRepository:
    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        self._session = session
        self._t = tables.erp_export
        self._circuits = tables.erp_connection_circuit
        self._claim_and_add = _claim_and_add_statement(tables.inbox, tables.erp_export)

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

    async def claim_and_add(
        self, consumer: str, event_ids: list[uuid.UUID], candidates: list[tuple[uuid.UUID, Export]]
    ) -> list[Export]:
        """The inbox claim and the insert of the new events' exports in one statement
        (`_CLAIM_AND_ADD_SQL`); what it returns is what `claim_events` and `add_many`
        would have, so the exports inserted are picked as `new_exports` picks them."""
        rows = [self._row(export) for _event_id, export in candidates]
        columns: dict[str, Any] = {}
        for name, kind in _export_columns(self._t):
            values = [row[name] for row in rows]
            if kind == "jsonb":
                values = [None if v is None else json.dumps(v) for v in values]
            columns[name] = values
        fresh, inserted = (
            await self._session.execute(
                self._claim_and_add,
                {
                    **columns,
                    "inbox_consumer": consumer,
                    "inbox_event_ids": list(dict.fromkeys(event_ids)),
                    "candidate_event_ids": [event_id for event_id, _export in candidates],
                },
            )
        ).one()
        added = set(inserted)
        return [e for e in new_exports(candidates, set(fresh)) if e.id in added]

    async def save(self, export: Export) -> None:
        values = self._row(export)
        for fixed in ("id", "draft_order_id", "org_id", "snapshot", "created_at", "trace_context"):
            del values[fixed]
        await self._session.execute(
            update(self._t).where(self._t.c.id == export.id).values(**values)
        )

    async def save_claimed(self, exports: list[Export]) -> None:
        """The claims of a batch in one statement (one row of arrays, whatever its size)."""
        if not exports:
            return
        columns = {
            "id": [e.id for e in exports],
            "status": [e.status.value for e in exports],
            "attempts": [e.attempts for e in exports],
            "lease_owner": [e.lease_owner for e in exports],
            "lease_expires_at": [e.lease_expires_at for e in exports],
        }
        await self._session.execute(_CLAIMED_SQL, columns)

    async def save_if_leased(self, exports: list[Export], owner: str) -> set[uuid.UUID]:
        """Outcomes of a batch in one statement; only rows `owner` still holds under
        its lease are written (the row lock and the check are the UPDATE's own)."""
        if not exports:
            return set()
        columns: dict[str, list[Any]] = {
            name: [getattr(e, name) for e in exports] for name in ("id", *_OUTCOME_COLUMNS)
        }
        columns["status"] = [e.status.value for e in exports]
        columns["error_json"] = [
            None if e.error_json is None else json.dumps(_storable(e.error_json)) for e in exports
        ]
        result = await self._session.execute(_OUTCOMES_SQL, {**columns, "owner": owner})
        return set(result.scalars())

    async def lock_claims(self, now: datetime) -> ClaimChores:
        """Try to take the claim lock (held until the transaction ends), so the in-flight
        count per connection that a claim reads is not raced by another claim; and which
        chores there are, in the same statement. A worker that finds the lock taken does
        not wait for it: the holder is claiming the due exports right now."""
        held, overdue, unannounced, probes, due = (
            await self._session.execute(_CHORES_SQL, {"now": now, "key": _CLAIM_LOCK})
        ).one()
        # each chore is ANDed with the lock in the statement: none when it is not held
        return ClaimChores(
            held=held, overdue=overdue, unannounced=unannounced, probes=probes, due=due
        )

    async def announce_due(self) -> None:
        await self._session.execute(
            select(func.pg_notify(bindparam("channel", EXPORTS_DUE_CHANNEL), ""))
        )

    async def lock_due(self, now: datetime, limit: int, per_connection: int) -> list[Export]:
        """Due exports of connections whose circuit is closed, oldest due first, at most
        `per_connection` in flight per connection (counting those already delivering):
        a connection with a backlog takes its share and the others still get theirs."""
        if limit <= 0:
            return []
        # chosen and row-locked in one statement (rows another worker holds are skipped)
        found = await self._session.execute(
            _DUE_SQL, {"now": now, "bound": per_connection, "limit": limit}
        )
        return [self._load(row) for row in found]

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

    async def next_due(self, now: datetime) -> datetime | None:
        due = (await self._session.execute(_NEXT_DUE_SQL, {"now": now})).scalar()
        return due if isinstance(due, datetime) else None

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

#: when a claim could next find work: each branch reads a partial index by status, or
#: the circuits (few rows); `least` ignores NULLs (a branch with nothing to wait for)
_NEXT_DUE_SQL = text(
    """
    SELECT least(
        (SELECT min(e.next_attempt_at) FROM export.erp_export e
         WHERE e.status = 'PENDING' AND NOT EXISTS (
             SELECT 1 FROM export.erp_connection_circuit k
             WHERE k.connection_id = e.connection_id AND k.state <> 'closed')),
        (SELECT min(deliver_by) FROM export.erp_export WHERE status = 'PENDING'),
        (SELECT min(lease_expires_at) FROM export.erp_export WHERE status = 'DELIVERING'),
        (SELECT min(CASE WHEN state = 'open' THEN next_probe_at ELSE probe_expires_at END)
         FROM export.erp_connection_circuit WHERE state <> 'closed'),
        (SELECT CAST(:now AS timestamptz) WHERE EXISTS (
             SELECT 1 FROM export.erp_export e
             JOIN export.erp_connection_circuit k ON k.connection_id = e.connection_id
             WHERE k.state <> 'closed' AND e.status = 'PENDING'
               AND (e.error_json IS NULL
                    OR e.error_json ->> 'reason' IS DISTINCT FROM 'waiting_for_dropzone')))
    )
    """
)


@cache
def _export_columns(table: Table) -> tuple[tuple[str, str], ...]:
    """Every column of the export table with its Postgres type (jsonb ones go as text)."""
    dialect = PGDialect()  # type: ignore[no-untyped-call]
    return tuple((column.name, column.type.compile(dialect=dialect).lower()) for column in table.c)


@cache
def _claim_and_add_statement(inbox: Table, exports: Table) -> Any:
    """Claim the event ids in the inbox, then insert, in candidate order, the rows whose
    event was claimed now (a later row of the same export id, or an id already stored,
    is left alone: ON CONFLICT DO NOTHING); the ids claimed and the ids inserted."""
    columns = _export_columns(exports)
    names = [name for name, _type in columns]
    arrays = ", ".join(
        f"CAST(:{name} AS {'text' if kind == 'jsonb' else kind}[])" for name, kind in columns
    )
    values = ", ".join(
        f"CAST(v.{name} AS jsonb)" if kind == "jsonb" else f"v.{name}" for name, kind in columns
    )
    return text(
        f"""
        WITH claimed AS ({claim_sql(inbox)}), added AS (
            INSERT INTO {exports.fullname} ({", ".join(names)})
            SELECT {values}
            FROM unnest(CAST(:candidate_event_ids AS uuid[]), {arrays})
                 WITH ORDINALITY AS v(event_id, {", ".join(names)}, n)
            WHERE v.event_id IN (SELECT event_id FROM claimed)
            ORDER BY v.n
            ON CONFLICT (id) DO NOTHING
            RETURNING id
        )
        SELECT ARRAY(SELECT event_id FROM claimed), ARRAY(SELECT id FROM added)
        """  # noqa: S608 (the names are the tables' own, from the metadata; values are params)
    )


#: the claims of a batch in one statement: each parameter is one array, unnested into
#: rows joined on the id
_CLAIMED_SQL = text(
    """
    UPDATE export.erp_export t
    SET status = v.status, attempts = v.attempts,
        lease_owner = v.lease_owner, lease_expires_at = v.lease_expires_at
    FROM unnest(CAST(:id AS uuid[]), CAST(:status AS text[]), CAST(:attempts AS integer[]),
                CAST(:lease_owner AS text[]), CAST(:lease_expires_at AS timestamptz[]))
         AS v(id, status, attempts, lease_owner, lease_expires_at)
    WHERE t.id = v.id
    """
)

#: the columns an attempt's outcome writes (`_OUTCOMES_SQL`'s arrays, in its order)
_OUTCOME_COLUMNS = (
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
#: the outcomes of a batch in one statement, fenced: a row that `:owner` no longer
#: holds under its lease (claimed again by another worker, or final) is left alone;
#: the ids written come back
_OUTCOMES_SQL = text(
    """
    UPDATE export.erp_export t
    SET status = v.status, attempts = v.attempts, next_attempt_at = v.next_attempt_at,
        export_storage_key = v.export_storage_key, remote_path = v.remote_path,
        checksum = v.checksum, size_bytes = v.size_bytes,
        error_json = CAST(v.error_json AS jsonb), sent_at = v.sent_at,
        lease_owner = v.lease_owner, lease_expires_at = v.lease_expires_at
    FROM unnest(CAST(:id AS uuid[]), CAST(:status AS text[]), CAST(:attempts AS integer[]),
                CAST(:next_attempt_at AS timestamptz[]), CAST(:export_storage_key AS text[]),
                CAST(:remote_path AS text[]), CAST(:checksum AS text[]),
                CAST(:size_bytes AS bigint[]), CAST(:error_json AS text[]),
                CAST(:sent_at AS timestamptz[]), CAST(:lease_owner AS text[]),
                CAST(:lease_expires_at AS timestamptz[]))
         AS v(id, status, attempts, next_attempt_at, export_storage_key, remote_path,
              checksum, size_bytes, error_json, sent_at, lease_owner, lease_expires_at)
    WHERE t.id = v.id AND t.status = 'DELIVERING' AND t.lease_owner = :owner
    RETURNING t.id
    """
)

#: the claim's lock and chores (`ClaimChores`): each EXISTS is what the step's own query
#: selects. The lock is taken in the FROM item, before the select list is evaluated; the
#: snapshot is the statement's, taken before the lock, so the claim's own query
#: (`_DUE_SQL`, a later statement) is what sees the claims committed before it.
_CHORES_SQL = text(
    """
    SELECT
        l.held,
        l.held AND EXISTS (SELECT 1 FROM export.erp_export
                WHERE status = 'PENDING' AND deliver_by <= :now),
        l.held AND EXISTS (SELECT 1 FROM export.erp_export e
                JOIN export.erp_connection_circuit k ON k.connection_id = e.connection_id
                WHERE k.state <> 'closed' AND e.status = 'PENDING'
                  AND (e.error_json IS NULL
                       OR e.error_json ->> 'reason' IS DISTINCT FROM 'waiting_for_dropzone')),
        l.held AND EXISTS (SELECT 1 FROM export.erp_connection_circuit
                WHERE (state = 'open' AND next_probe_at <= :now)
                   OR (state = 'half_open' AND probe_expires_at <= :now)),
        l.held AND (
            EXISTS (SELECT 1 FROM export.erp_export
                    WHERE status = 'PENDING' AND next_attempt_at <= :now)
            OR EXISTS (SELECT 1 FROM export.erp_export
                       WHERE status = 'DELIVERING' AND lease_expires_at <= :now))
    FROM (SELECT pg_try_advisory_xact_lock(CAST(:key AS bigint)) AS held) AS l
    """
)

#: the channel the workers listen on (bootstrap), on which migration 0005's trigger
#: announces new exports and a claim that filled its slots announces the rest
EXPORTS_DUE_CHANNEL = "export_exports_due"

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
    SELECT t.* FROM export.erp_export t
    JOIN (
        SELECT id, due_at FROM ranked
        WHERE connection_id IS NULL OR rank + busy <= :bound
        ORDER BY due_at
        LIMIT :limit
    ) due ON due.id = t.id
    ORDER BY due.due_at
    FOR UPDATE OF t SKIP LOCKED
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
            select(self._t).where(_one_of(self._t.c.connection_id, wanted))
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
            .where(_one_of(self._t.c.connection_id, ids))
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
