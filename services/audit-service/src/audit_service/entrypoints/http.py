"""The HTTP API's routes: `GET /audit-log` and `GET /audit-log/verify` (the app, with
health, metrics and docs, is made in bootstrap.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from orderflow_shared.web import error_responses, string_header
from pydantic import BaseModel, Field

from audit_service.adapters.signing import verifier_of
from audit_service.domain.entry import entry_values
from audit_service.domain.query import (
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    AuditQuery,
    InvalidQuery,
    Position,
)
from audit_service.domain.verification import ChainReport, StoredEntry
from audit_service.entrypoints.deps import Admin, AnyRole, ContainerDep
from audit_service.entrypoints.ingest import VERIFICATION_FAILURES
from audit_service.entrypoints.retention_http import retention_router
from audit_service.service_layer.queries import list_entries
from audit_service.service_layer.verify import verify_org


class AuditEntryOut(BaseModel):
    id: int
    event_id: UUID
    action: str = Field(examples=["DRAFT_APPROVED"])
    entity_type: str = Field(examples=["draft_order"])
    entity_id: str
    actor_user_id: str | None
    created_at: datetime = Field(description="When it happened (the event's time).")
    occurred_at: datetime
    recorded_at: datetime | None = Field(description="When the audit service stored it.")
    source_topic: str
    data: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, row: StoredEntry) -> AuditEntryOut:
        values = {
            **entry_values(row.entry),
            "id": row.id,
            "created_at": row.entry.occurred_at,
            "recorded_at": row.recorded_at,
            "data": dict(row.entry.data),
            "prev_hash": row.prev_hash,
            "hash": row.hash,
        }
        # all but the entry's org (the caller's own) and producer
        return cls(**{name: values[name] for name in cls.model_fields})


class BrokenLinkOut(BaseModel):
    id: int
    event_id: str
    reason: str
    expected: str
    found: str


class VerifyOut(BaseModel):
    ok: bool
    entries_checked: int
    first_broken: BrokenLinkOut | None

    @classmethod
    def of(cls, report: ChainReport) -> VerifyOut:
        broken = report.first_broken
        return cls(
            ok=report.ok,
            entries_checked=report.entries_checked,
            first_broken=None
            if broken is None
            else BrokenLinkOut.model_validate(broken, from_attributes=True),
        )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


#: RFC 3339 date-time (the offset may be left out: then UTC); not pydantic's lax forms
#: such as a bare number of seconds, which `date-time` does not allow
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})?$"
)


def _date_time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        if not _DATE_TIME.match(value):
            raise ValueError(value)
        moment = datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "datetime_from_date_parsing",
                    "loc": ["query", name],
                    "msg": "Input should be an RFC 3339 date-time, e.g. 2026-11-26T10:00:00Z",
                }
            ]
        ) from exc
    return _utc(moment)


DateTimeQuery = {"format": "date-time", "examples": ["2026-11-26T10:00:00Z"]}


router = APIRouter(tags=["audit"])


@router.get(
    "/audit-log",
    response_model=list[AuditEntryOut],
    responses={
        200: {
            "headers": {
                "Link": string_header('The next page, `<url>; rel="next"` (absent on the last)'),
                "X-Next-Cursor": string_header(
                    "The `cursor` of the next page (absent on the last)"
                ),
            }
        },
        **error_responses(
            400,
            401,
            403,
            422,
            descriptions={422: "Invalid filter, limit or cursor"},
        ),
    },
)
async def get_audit_log(
    request: Request,
    response: Response,
    principal: AnyRole,
    container: ContainerDep,
    entity_id: str | None = None,
    action: str | None = None,
    actor_user_id: str | None = None,
    occurred_from: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=40,
            description="Entries that happened at or after this RFC 3339 date-time",
            json_schema_extra=DateTimeQuery,
        ),
    ] = None,
    occurred_to: Annotated[
        str | None,
        Query(
            alias="to",
            max_length=40,
            description="Entries that happened up to this RFC 3339 date-time",
            json_schema_extra=DateTimeQuery,
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            max_length=40,
            pattern=CURSOR_PATTERN,
            description="Where the previous page ended, as `X-Next-Cursor` or the `Link` "
            "header gave it: `<microseconds since the epoch>.<entry id>`",
            examples=["1764583200123456.42"],
        ),
    ] = None,
) -> list[AuditEntryOut]:
    """The caller's org's entries, oldest first; the next page is in the `Link` header."""
    try:
        query = AuditQuery(
            org_id=principal.org_id,
            entity_id=entity_id,
            action=action,
            actor_user_id=actor_user_id,
            occurred_from=_date_time("from", occurred_from),
            occurred_to=_date_time("to", occurred_to),
            limit=limit,
            after=Position.decode(cursor) if cursor else None,
        )
    except InvalidQuery as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    page = await list_entries(container.uow_factory, query)
    if page.next_cursor is not None:
        params = {k: v for k, v in request.query_params.items() if k != "cursor"}
        params["cursor"] = page.next_cursor
        url = request.url.replace_query_params(**params)
        next_link = f"{url.path}?{url.query}"
        response.headers["Link"] = f'<{next_link}>; rel="next"'
        response.headers["X-Next-Cursor"] = page.next_cursor
    return [AuditEntryOut.of(row) for row in page.entries]


@router.get(
    "/audit-log/verify",
    response_model=VerifyOut,
    responses=error_responses(400, 401, 403, descriptions={403: "Requires the role admin"}),
)
async def verify_audit_log(principal: Admin, container: ContainerDep) -> VerifyOut:
    """Walks the caller's org's hash chain and reports the first broken link: the
    chain must start at the genesis or at a signed retention anchor, and reach the
    newest signed checkpoint of its head with that entry unchanged."""
    signatures = verifier_of(container.settings)
    report = await verify_org(container.uow_factory, principal.org_id, signatures)
    if not report.ok:
        VERIFICATION_FAILURES.inc()
    return VerifyOut.of(report)


router.include_router(retention_router)
