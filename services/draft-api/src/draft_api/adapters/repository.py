"""Postgres implementations of the repository ports (one AsyncSession per unit of work)."""

from __future__ import annotations

import copy
import functools
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence, Set
from decimal import Decimal
from typing import Any, TypeVar

from orderflow_shared.messaging import inbox
from sqlalchemy import (
    Select,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONPATH, Insert, insert
from sqlalchemy.engine import Result
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause

from draft_api.adapters.orm import Tables
from draft_api.domain import errors
from draft_api.domain.connector import ErpConnector
from draft_api.domain.idempotency import IdempotencyRecord, Operation
from draft_api.domain.model import (
    DraftLine,
    DraftOrder,
    DraftStatus,
    ExportProgress,
    ExportStatus,
    PushAttempt,
)
from draft_api.domain.org_settings import OrgSettings
from draft_api.domain.records import build
from draft_api.domain.validation import Issue
from draft_api.service_layer.ports import (
    ISSUES_IN_SUMMARY,
    DraftQuery,
    DraftSummary,
    PushTarget,
)

Child = TypeVar("Child")


class _SqlStore:
    """What each repository of a unit of work holds: its session and the tables."""

    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        self.session = session
        self.t = tables


class SqlDraftRepository(_SqlStore):
    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        super().__init__(session, tables)
        # What was loaded, so save() writes only what changed.
        self._loaded_lines: dict[uuid.UUID, list[DraftLine]] = {}
        self._loaded_attempts: dict[uuid.UUID, list[PushAttempt]] = {}
        self._loaded_headers: dict[uuid.UUID, dict[str, Any]] = {}
        #: the drafts added or saved: the unit of work collects their events at commit
        self.seen: list[DraftOrder] = []
        # export outcomes: the version and attempts each progress was read with, and
        # those staged for `write_progress`
        self._loaded_progress: dict[uuid.UUID, tuple[int, list[PushAttempt]]] = {}
        self._staged: dict[uuid.UUID, ExportProgress] = {}

    async def add(self, draft: DraftOrder) -> None:
        await self.session.execute(
            self.t.draft_order.insert().values(id=draft.id, **self._header(draft), version=0)
        )
        await self._write_lines(draft)
        await self._write_attempts(draft, [])
        self._remember(draft)
        self.seen.append(draft)

    async def get(
        self, org_id: str, draft_id: uuid.UUID, *, lock: bool = False
    ) -> DraftOrder | None:
        query = select(self.t.draft_order).where(
            self.t.draft_order.c.id == draft_id, self.t.draft_order.c.org_id == org_id
        )
        if lock:
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        if row is None:
            return None
        drafts = await self._hydrate([row])
        return drafts[0]

    async def lock_for_push(
        self, org_id: str, draft_id: uuid.UUID, *, key: str | None = None
    ) -> PushTarget | None:
        query = _lock_for_push(
            self.t.draft_order,
            self.t.draft_order_line,
            self.t.push_attempt,
            self.t.erp_connector,
            self.t.idempotency_key if key is not None else None,
        )
        params = {"org_id": org_id, "draft_id": draft_id, "key": key}
        rows = (await self._first_execute(query, params)).mappings().all()
        if rows and rows[0]["version"] != rows[0]["snapshot_version"]:
            # A writer committed between the statement's snapshot and the lock: the row
            # is its version, the joined rows are older. Read again under the lock.
            rows = (await self.session.execute(query, params)).mappings().all()
        if not rows:
            return None
        head = rows[0]
        attempt = _prefixed(head, "attempt_")
        draft = _draft_of(
            head,
            lines=[
                build(DraftLine, _prefixed(r, "line_"))
                for r in rows
                if r["line_line_no"] is not None
            ],
            attempts=[] if attempt["erp_export_id"] is None else [_attempt_of(attempt)],
        )
        self._remember(draft)
        earlier = _prefixed(head, "key_") if key is not None else {}
        return PushTarget(
            draft,
            has_active_connector=bool(head["has_active_connector"]),
            earlier=_key_record(earlier) if earlier.get("key") is not None else None,
        )

    async def _first_execute(self, query: Select[Any], params: dict[str, Any]) -> Result[Any]:
        """The first statement of the unit of work. A pooled connection is not pinged
        before use: when it turns out dead (Postgres restarted; SQLAlchemy then drops
        the pool's connections), the statement runs once more on a new one."""
        fresh = not self.session.in_transaction()
        try:
            result: Result[Any] = await self.session.execute(query, params)
            return result
        except DBAPIError as exc:
            if not (fresh and exc.connection_invalidated):
                raise
        await self.session.rollback()
        result = await self.session.execute(query, params)
        return result

    async def save(self, draft: DraftOrder) -> None:
        d = self.t.draft_order
        header = self._header(draft)
        loaded = self._loaded_headers.get(draft.id)
        if loaded is not None:  # only what changed since it was read
            header = {name: value for name, value in header.items() if loaded[name] != value}
        result = await self.session.execute(
            update(d)
            .where(d.c.id == draft.id, d.c.version == draft.version)
            .values(**header, version=d.c.version + 1)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise errors.ConcurrentModification()
        draft.version += 1
        if draft.lines != self._loaded_lines.get(draft.id):
            await self.session.execute(
                delete(self.t.draft_order_line).where(
                    self.t.draft_order_line.c.draft_id == draft.id
                )
            )
            await self._write_lines(draft)
        await self._write_attempts(draft, self._loaded_attempts.get(draft.id, []))
        self._remember(draft)
        self.seen.append(draft)

    async def lock_for_outcomes(
        self, targets: Sequence[tuple[str, uuid.UUID, uuid.UUID]]
    ) -> dict[tuple[str, uuid.UUID], ExportProgress]:
        if not targets:
            return {}
        drafts = sorted({(draft_id, org_id) for org_id, draft_id, _ in targets})
        params = {"drafts": drafts, "exports": sorted({export for _, _, export in targets})}
        query = _lock_for_outcomes(self.t.draft_order, self.t.push_attempt)
        rows = (await self.session.execute(query, params)).mappings().all()
        if any(row["version"] != row["snapshot_version"] for row in rows):
            # as in lock_for_push: a writer committed between snapshot and lock
            rows = (await self.session.execute(query, params)).mappings().all()
        found: dict[tuple[str, uuid.UUID], ExportProgress] = {}
        for row in rows:
            key = (row["org_id"], row["id"])
            progress = found.get(key)
            if progress is None:
                progress = found[key] = build(
                    ExportProgress, row, status=DraftStatus(row["status"]), attempts=[]
                )
            attempt = _prefixed(row, "attempt_")
            if attempt["erp_export_id"] is not None:
                progress.attempts.append(_attempt_of(attempt))
        self._remember_progress(found.values())
        return found

    def save_progress(self, progress: ExportProgress) -> None:
        progress.version += 1
        self._staged[progress.id] = progress

    async def write_progress(self) -> None:
        staged, self._staged = list(self._staged.values()), {}
        if not staged:
            return
        params: dict[str, list[Any]] = defaultdict(list)
        for progress in staged:
            loaded_version, loaded_attempts = self._loaded_progress[progress.id]
            _append(
                params,
                id=progress.id,
                org_id=progress.org_id,
                loaded=loaded_version,
                version=progress.version,
                status=progress.status.value,
                updated_at=progress.updated_at,
            )
            for attempt in progress.attempts:
                if attempt not in loaded_attempts:
                    _append(
                        params,
                        a_erp_export_id=attempt.erp_export_id,
                        a_draft_id=progress.id,
                        a_org_id=progress.org_id,
                        a_status=attempt.status.value,
                        a_error_json=json.dumps(attempt.error),
                        a_finished_at=attempt.finished_at,
                    )
        for name in _ATTEMPT_WRITE:
            params.setdefault(f"a_{name}", [])
        written = (
            (
                await self.session.execute(
                    _write_progress(self.t.draft_order, self.t.push_attempt), params
                )
            )
            .scalars()
            .all()
        )
        if len(written) != len(staged):
            raise errors.ConcurrentModification()
        self._remember_progress(staged)

    def _remember_progress(self, progress: Iterable[ExportProgress]) -> None:
        for each in progress:
            self._loaded_progress[each.id] = (each.version, copy.deepcopy(each.attempts))

    async def page(self, org_id: str, query: DraftQuery) -> tuple[list[DraftSummary], int]:
        d = self.t.draft_order
        where = [d.c.org_id == org_id]
        if query.status is not None:
            where.append(d.c.status == query.status.value)
        if query.search:
            pattern = "%" + _like_escaped(query.search) + "%"
            where.append(
                or_(
                    d.c.external_ref.ilike(pattern, escape="\\"),
                    d.c.customer_id.ilike(pattern, escape="\\"),
                )
            )
        total = (
            await self.session.execute(select(func.count()).select_from(d).where(*where))
        ).scalar_one()
        header = [c for c in d.c if c.name != "validation_issues"]
        issues_head = func.jsonb_path_query_array(
            d.c.validation_issues, cast(literal(f"$[0 to {ISSUES_IN_SUMMARY - 1}]"), JSONPATH)
        )
        rows = (
            (
                await self.session.execute(
                    select(
                        *header,
                        issues_head.label("issues_head"),
                        func.jsonb_array_length(d.c.validation_issues).label("issue_count"),
                    )
                    .where(*where)
                    .order_by(d.c.created_at.desc(), d.c.id)
                    .limit(query.limit)
                    .offset(query.offset)
                )
            )
            .mappings()
            .all()
        )
        return await self._summaries(list(rows)), int(total)

    async def _summaries(self, rows: list[Any]) -> list[DraftSummary]:
        """Line counts and totals per currency aggregated in SQL; lines stay in Postgres."""
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        ln = self.t.draft_order_line
        per_currency: dict[uuid.UUID, dict[str, tuple[int, Decimal]]] = defaultdict(dict)
        aggregates = (
            select(
                ln.c.draft_id,
                ln.c.currency,
                func.count().label("lines"),
                func.sum(ln.c.quantity * ln.c.unit_price).label("total"),
            )
            .where(ln.c.draft_id.in_(ids))
            .group_by(ln.c.draft_id, ln.c.currency)
        )
        for r in (await self.session.execute(aggregates)).mappings():
            per_currency[r["draft_id"]][r["currency"]] = (int(r["lines"]), Decimal(r["total"]))
        attempts = await self._attempts(ids)
        summaries = []
        for row in rows:
            sums = per_currency[row["id"]]
            summaries.append(
                build(
                    DraftSummary,
                    row,
                    status=DraftStatus(row["status"]),
                    line_count=sum(count for count, _ in sums.values()),
                    total=sum((amount for _, amount in sums.values()), Decimal(0)),
                    totals={currency: amount for currency, (_, amount) in sums.items()},
                    issue_count=int(row["issue_count"] or 0),
                    validation_issues=[Issue(**i) for i in row["issues_head"] or []],
                    attempts=attempts[row["id"]],
                )
            )
        return summaries

    async def external_ref_taken(
        self, org_id: str, external_ref: str, *, exclude: uuid.UUID
    ) -> bool:
        d = self.t.draft_order
        query = select(
            exists().where(
                d.c.org_id == org_id, d.c.external_ref == external_ref, d.c.id != exclude
            )
        )
        return bool((await self.session.execute(query)).scalar())

    async def export_status(self, org_id: str, export_id: uuid.UUID) -> ExportStatus | None:
        p = self.t.push_attempt
        value = (
            await self.session.execute(
                select(p.c.status).where(p.c.erp_export_id == export_id, p.c.org_id == org_id)
            )
        ).scalar()
        return ExportStatus(value) if value is not None else None

    # -- mapping -----------------------------------------------------------------

    def _header(self, draft: DraftOrder) -> dict[str, Any]:
        """The draft_order row of the draft, but for its id and version."""
        d = self.t.draft_order
        return _row_of(d, draft, skip={"id", "version"}) | {
            "status": draft.status.value,
            "validation_issues": [vars(issue) for issue in draft.validation_issues],
        }

    async def _write_lines(self, draft: DraftOrder) -> None:
        if not draft.lines:
            return
        await self.session.execute(
            self.t.draft_order_line.insert(),
            [{"draft_id": draft.id, **vars(line)} for line in draft.lines],
        )

    async def _write_attempts(self, draft: DraftOrder, loaded: list[PushAttempt]) -> None:
        changed = [a for a in draft.attempts if a not in loaded]
        for attempt in changed:
            values = _row_of(self.t.push_attempt, attempt) | {
                "draft_id": draft.id,
                "org_id": draft.org_id,
                "status": attempt.status.value,
                "error_json": attempt.error,
            }
            await self.session.execute(_attempt_upsert(self.t.push_attempt), values)

    def _remember(self, draft: DraftOrder) -> None:
        self._loaded_lines[draft.id] = list(draft.lines)
        self._loaded_attempts[draft.id] = copy.deepcopy(draft.attempts)
        self._loaded_headers[draft.id] = self._header(draft)

    async def _hydrate(self, rows: list[Any]) -> list[DraftOrder]:
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        lines = await self._by_draft(
            self.t.draft_order_line, ids, "line_no", lambda r: build(DraftLine, r)
        )
        attempts = await self._attempts(ids)
        drafts = []
        for row in rows:
            draft = _draft_of(row, lines=lines[row["id"]], attempts=attempts[row["id"]])
            self._remember(draft)
            drafts.append(draft)
        return drafts

    async def _attempts(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[PushAttempt]]:
        return await self._by_draft(
            self.t.push_attempt,
            ids,
            "attempt",
            _attempt_of,
        )

    async def _by_draft(
        self, table: Table, ids: list[uuid.UUID], order: str, make: Callable[[Any], Child]
    ) -> dict[uuid.UUID, list[Child]]:
        """The rows of a child table of these drafts, per draft, in `order` order."""
        query = (
            select(table)
            .where(table.c.draft_id.in_(ids))
            .order_by(table.c.draft_id, table.c[order])
        )
        children: dict[uuid.UUID, list[Child]] = defaultdict(list)
        for row in (await self.session.execute(query)).mappings():
            children[row["draft_id"]].append(make(row))
        return children


class SqlConnectorReadModel(_SqlStore):
    async def has_active(self, org_id: str) -> bool:
        c = self.t.erp_connector
        query = select(exists().where(c.c.org_id == org_id, c.c.is_active.is_(True)))
        return bool((await self.session.execute(query)).scalar())

    async def upsert(self, connector: ErpConnector, *, overwrite: bool = True) -> None:
        c = self.t.erp_connector
        stmt = insert(c).values(_row_of(c, connector))
        if not overwrite:
            await self.session.execute(
                stmt.on_conflict_do_nothing(index_elements=["connection_id"])
            )
            return
        # arrival order: the record read last wins (see results.record_connector_change)
        stmt = stmt.on_conflict_do_update(
            index_elements=["connection_id"],
            set_=_excluded(stmt, "name", "connector_type", "is_active", "changed_at"),
            where=c.c.org_id == stmt.excluded.org_id,
        )
        await self.session.execute(stmt)


class SqlOrgSettings(_SqlStore):
    async def get(self, org_id: str) -> OrgSettings:
        o = self.t.org_settings
        row = (await self.session.execute(select(o).where(o.c.org_id == org_id))).mappings().first()
        if row is None:
            return OrgSettings(org_id=org_id)
        return build(OrgSettings, row, four_eyes=bool(row["four_eyes"]))

    async def save(self, settings: OrgSettings) -> None:
        o = self.t.org_settings
        stmt = insert(o).values(_row_of(o, settings))
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["org_id"],
                set_=_excluded(stmt, "four_eyes", "updated_by_user_id", "updated_at"),
            )
        )


def _draft_of(row: Any, *, lines: list[DraftLine], attempts: list[PushAttempt]) -> DraftOrder:
    return build(
        DraftOrder,
        row,
        status=DraftStatus(row["status"]),
        lines=lines,
        validation_issues=[Issue(**i) for i in row["validation_issues"] or []],
        attempts=attempts,
    )


def _attempt_of(row: Any) -> PushAttempt:
    return build(PushAttempt, row, status=ExportStatus(row["status"]), error=row["error_json"])


def _key_record(row: Any) -> IdempotencyRecord:
    return build(
        IdempotencyRecord,
        row,
        operation=Operation(row["operation"]),
        fingerprint=row["request_fingerprint"],
    )


def _prefixed(row: Any, prefix: str) -> dict[str, Any]:
    """The columns of `row` labelled `prefix` + name, by name."""
    return {name[len(prefix) :]: value for name, value in row.items() if name.startswith(prefix)}


def _row_of(table: Table, record: object, *, skip: Set[str] = frozenset()) -> dict[str, Any]:
    """The columns of `table` that `record` has an attribute of the same name for."""
    return {
        c.name: getattr(record, c.name)
        for c in table.c
        if c.name not in skip and hasattr(record, c.name)
    }


def _excluded(stmt: Insert, *names: str) -> dict[str, Any]:
    """ON CONFLICT DO UPDATE: these columns take the values of the row that was refused."""
    return {name: stmt.excluded[name] for name in names}


def _like_escaped(text: str) -> str:
    """`text` as a literal inside a LIKE pattern (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SqlIdempotencyKeys(_SqlStore):
    async def get(self, org_id: str, key: str) -> IdempotencyRecord | None:
        k = self.t.idempotency_key
        row = (
            (await self.session.execute(select(k).where(k.c.org_id == org_id, k.c.key == key)))
            .mappings()
            .first()
        )
        return None if row is None else _key_record(row)

    async def add(self, record: IdempotencyRecord) -> None:
        k = self.t.idempotency_key
        stmt = (
            insert(k)
            .values(
                _row_of(k, record)
                | {"operation": record.operation.value, "request_fingerprint": record.fingerprint}
            )
            .on_conflict_do_nothing(index_elements=["org_id", "key"])
            .returning(k.c.key)
        )
        if (await self.session.execute(stmt)).first() is None:
            raise errors.IdempotencyKeyInFlight()

    async def delete(self, org_id: str, key: str) -> None:
        k = self.t.idempotency_key
        await self.session.execute(delete(k).where(k.c.org_id == org_id, k.c.key == key))


class SqlInbox(_SqlStore):
    def __init__(self, session: AsyncSession, tables: Tables, consumer: str) -> None:
        super().__init__(session, tables)
        self.consumer = consumer

    async def claim(self, event_id: uuid.UUID) -> bool:
        return bool(await inbox.claim(self.session, self.t.inbox, self.consumer, event_id))

    async def claim_many(self, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        return await inbox.claim_many(self.session, self.t.inbox, self.consumer, event_ids)


@functools.cache
def _attempt_upsert(table: Table) -> Any:
    """Built once per table: compiling `excluded` costs more than the round trip."""
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=["erp_export_id"],
        set_=_excluded(stmt, "status", "error_json", "finished_at"),
    )


@functools.cache
def _lock_for_push(
    draft: Table, lines: Table, attempts: Table, connectors: Table, keys: Table | None
) -> Select[Any]:
    """One statement: the draft's row locked, with one row per line (in order), its
    latest attempt (`attempt_*`), whether its org has an active connector, the version
    its snapshot saw (`snapshot_version`: unlike the locked row, joined rows are read at
    the statement's start) and, with `keys`, the key's row (`key_*`, param `key`)."""
    d = draft
    at_start = d.alias("at_start")
    latest = (
        select(attempts)
        .where(attempts.c.draft_id == d.c.id)
        .order_by(attempts.c.attempt.desc())
        .limit(1)
        .lateral("latest")
    )
    columns: list[Any] = [
        *d.c,
        select(at_start.c.version)
        .where(at_start.c.id == d.c.id)
        .scalar_subquery()
        .label("snapshot_version"),
        exists()
        .where(connectors.c.org_id == d.c.org_id, connectors.c.is_active.is_(True))
        .label("has_active_connector"),
        *(column.label(f"attempt_{column.name}") for column in latest.c),
        *(column.label(f"line_{column.name}") for column in lines.c),
    ]
    joined = d.outerjoin(latest, true()).outerjoin(lines, lines.c.draft_id == d.c.id)
    if keys is not None:
        columns += [column.label(f"key_{column.name}") for column in keys.c]
        joined = joined.outerjoin(
            keys, and_(keys.c.org_id == d.c.org_id, keys.c.key == bindparam("key"))
        )
    return (
        select(*columns)
        .select_from(joined)
        .where(d.c.id == bindparam("draft_id"), d.c.org_id == bindparam("org_id"))
        .order_by(lines.c.line_no)
        .with_for_update(of=d)
    )


@functools.cache
def _lock_for_outcomes(draft: Table, attempts: Table) -> Select[Any]:
    """One statement: the drafts' rows (param `drafts`: (id, org_id) pairs) locked, in
    id order, each with what an export's outcome decides on: status, version, current
    export, the version its snapshot saw (`snapshot_version`, see `_lock_for_push`) and,
    one row each, those of its attempts whose export is in param `exports` (`attempt_*`)."""
    d = draft
    at_start = d.alias("at_start")
    columns: list[Any] = [
        d.c.id,
        d.c.org_id,
        d.c.status,
        d.c.version,
        d.c.current_export_id,
        d.c.updated_at,
        select(at_start.c.version)
        .where(at_start.c.id == d.c.id)
        .scalar_subquery()
        .label("snapshot_version"),
        *(column.label(f"attempt_{column.name}") for column in attempts.c),
    ]
    named = and_(
        attempts.c.draft_id == d.c.id,
        attempts.c.org_id == d.c.org_id,
        attempts.c.erp_export_id.in_(bindparam("exports", expanding=True)),
    )
    return (
        select(*columns)
        .select_from(d.outerjoin(attempts, named))
        .where(tuple_(d.c.id, d.c.org_id).in_(bindparam("drafts", expanding=True)))
        .order_by(d.c.id)
        .with_for_update(of=d)
    )


def _append(columns: dict[str, list[Any]], **values: Any) -> None:
    """One more row of column arrays (an `unnest` statement's params)."""
    for name, value in values.items():
        columns[name].append(value)


#: the attempt columns `write_progress` writes (params `a_<name>`)
_ATTEMPT_WRITE = ("erp_export_id", "draft_id", "org_id", "status", "error_json", "finished_at")


@functools.cache
def _write_progress(draft: Table, attempts: Table) -> TextClause:
    """One statement for a batch of export outcomes: each changed attempt's status,
    error and end (params `a_*`, arrays), then each draft's status, `updated_at` and
    new `version` where it still has the version it was read with (`loaded`); returns
    the ids of the drafts written."""
    return text(
        f"""
        WITH attempts AS (
            UPDATE {attempts.fullname} p
            SET status = w.status, error_json = CAST(w.error_json AS jsonb),
                finished_at = w.finished_at
            FROM unnest(
                CAST(:a_erp_export_id AS uuid[]), CAST(:a_draft_id AS uuid[]),
                CAST(:a_org_id AS text[]), CAST(:a_status AS text[]),
                CAST(:a_error_json AS text[]), CAST(:a_finished_at AS timestamptz[])
            ) AS w(erp_export_id, draft_id, org_id, status, error_json, finished_at)
            WHERE p.erp_export_id = w.erp_export_id AND p.draft_id = w.draft_id
                AND p.org_id = w.org_id
        )
        UPDATE {draft.fullname} d
        SET status = v.status, updated_at = v.updated_at, version = v.version
        FROM unnest(
            CAST(:id AS uuid[]), CAST(:org_id AS text[]), CAST(:loaded AS integer[]),
            CAST(:version AS integer[]), CAST(:status AS text[]),
            CAST(:updated_at AS timestamptz[])
        ) AS v(id, org_id, loaded, version, status, updated_at)
        WHERE d.id = v.id AND d.org_id = v.org_id AND d.version = v.loaded
        RETURNING d.id
        """  # noqa: S608 (the names are the tables' own, from the metadata; values are params)
    )
