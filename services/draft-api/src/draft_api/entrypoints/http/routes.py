"""Routes of /draft-orders: each maps HTTP to one use case."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from orderflow_shared.preconditions import Preconditions
from orderflow_shared.web import (
    VALIDATOR_HEADERS,
    PreconditionsDep,
    links_by_id,
    set_validators,
)

from draft_api.domain.errors import DomainError
from draft_api.domain.idempotency import Operation
from draft_api.domain.model import DraftStatus
from draft_api.entrypoints.http.dependencies import (
    Approver,
    JsonBody,
    Operator,
    Pusher,
    Reader,
    ServicesDep,
)
from draft_api.entrypoints.http.errors import responses
from draft_api.entrypoints.http.schemas import (
    ApprovalOut,
    DraftIn,
    DraftOut,
    DraftPage,
    DraftPatch,
    DraftSummaryOut,
    IssueOut,
    PushOut,
    ValidationOut,
)
from draft_api.entrypoints.metrics import count_push, count_refused_push
from draft_api.service_layer import drafts, push, workflow

router = APIRouter(prefix="/draft-orders", tags=["draft orders"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Optional. Repeating a request with the same key returns the first "
        "result (same erp_export_id) instead of pushing again. 1-255 characters of "
        "letters, digits and -_.:~+/= (a quoted sf-string is accepted).",
        # published, not enforced by FastAPI: a key outside it is draft-api's own 400
        json_schema_extra={
            "pattern": r'^[A-Za-z0-9_.:~+/=-]{1,255}$|^"[A-Za-z0-9_.:~+/=-]{1,255}"$',
            "minLength": 1,
            "maxLength": 257,
        },
        examples=["7c9e6679-7425-40de-944b-e07fc1f90ae7"],
    ),
]
PUSH_HEADERS = {
    "Idempotent-Replayed": {
        "description": "`true` when the response replays an earlier request with the same key",
        "schema": {"type": "string"},
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DraftOut,
    dependencies=[JsonBody],
    responses={
        201: {
            "headers": {
                "Location": {"description": "URL of the new draft", "schema": {"type": "string"}},
                **VALIDATOR_HEADERS,
            },
            "links": links_by_id(
                "draft_id",
                "get_draft",
                "edit_draft",
                "validate_draft",
                "approve_draft",
                "push_draft",
                "retry_push",
            ),
        },
        **responses(413, 415, 422),
    },
    summary="Create a draft order (status NEW)",
    operation_id="create_draft",
)
async def create_draft(
    body: DraftIn, actor: Operator, services: ServicesDep, response: Response
) -> DraftOut:
    draft = await drafts.create_draft(
        services.uow_factory(),
        actor,
        drafts.CreateDraft(
            customer_id=body.customer_id.strip(),
            external_ref=(body.external_ref or "").strip() or None,
            lines=[line.to_domain() for line in body.lines],
        ),
    )
    response.headers["Location"] = f"/draft-orders/{draft.id}"
    set_validators(response, draft.version, draft.updated_at)
    return DraftOut.of(draft)


@router.get(
    "",
    response_model=DraftPage,
    responses=responses(422),
    summary="List draft orders (summaries: line count and totals, no lines)",
    operation_id="list_drafts",
)
async def list_drafts(
    actor: Reader,
    services: ServicesDep,
    status_: Annotated[DraftStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    q: Annotated[
        str | None,
        Query(
            max_length=100,
            description="Only drafts whose external reference or customer id contains "
            "this text (case-insensitive)",
            examples=["PO-47"],
        ),
    ] = None,
) -> DraftPage:
    page, total = await drafts.list_drafts(
        services.uow_factory(),
        actor,
        status=status_,
        limit=limit,
        offset=offset,
        search=(q or "").strip() or None,
    )
    return DraftPage(
        items=[DraftSummaryOut.of(d) for d in page], total=total, limit=limit, offset=offset
    )


@router.get(
    "/{draft_id}",
    response_model=DraftOut,
    responses={200: {"headers": VALIDATOR_HEADERS}, **responses(404, 422)},
    summary="A draft order with its lines and push history",
    operation_id="get_draft",
)
async def get_draft(
    draft_id: uuid.UUID, actor: Reader, services: ServicesDep, response: Response
) -> DraftOut:
    draft = await drafts.get_draft(services.uow_factory(), actor, draft_id)
    set_validators(response, draft.version, draft.updated_at)
    return DraftOut.of(draft)


@router.patch(
    "/{draft_id}",
    response_model=DraftOut,
    dependencies=[JsonBody],
    responses={200: {"headers": VALIDATOR_HEADERS}, **responses(404, 409, 412, 413, 415, 422, 428)},
    summary="Edit a NEW, NEEDS_REVIEW or READY draft (it goes back to NEW)",
    operation_id="edit_draft",
)
async def edit_draft(
    draft_id: uuid.UUID,
    body: DraftPatch,
    actor: Operator,
    services: ServicesDep,
    expect: PreconditionsDep,
    response: Response,
) -> DraftOut:
    sent = body.model_fields_set
    draft = await drafts.edit_draft(
        services.uow_factory(),
        actor,
        drafts.EditDraft(
            draft_id=draft_id,
            customer_id=None if body.customer_id is None else body.customer_id.strip(),
            external_ref=(body.external_ref or "").strip() or None,
            clear_external_ref="external_ref" in sent and not (body.external_ref or "").strip(),
            lines=None if body.lines is None else [line.to_domain() for line in body.lines],
            expect=expect,
        ),
    )
    set_validators(response, draft.version, draft.updated_at)
    return DraftOut.of(draft)


@router.post(
    "/{draft_id}/validate",
    response_model=ValidationOut,
    responses={200: {"headers": VALIDATOR_HEADERS}, **responses(404, 409, 412, 422, 428)},
    summary="Run the validation rules: READY, or NEEDS_REVIEW with the issues",
    operation_id="validate_draft",
)
async def validate_draft(
    draft_id: uuid.UUID,
    actor: Operator,
    services: ServicesDep,
    expect: PreconditionsDep,
    response: Response,
) -> ValidationOut:
    draft = await workflow.validate_draft(services.uow_factory(), actor, draft_id, expect=expect)
    set_validators(response, draft.version, draft.updated_at)
    return ValidationOut(
        id=draft.id,
        status=draft.status,
        issues=[IssueOut(**vars(i)) for i in draft.validation_issues],
    )


@router.post(
    "/{draft_id}/approve",
    response_model=ApprovalOut,
    responses={200: {"headers": VALIDATOR_HEADERS}, **responses(404, 409, 412, 422, 428)},
    summary="Approve a READY draft (role approver)",
    operation_id="approve_draft",
)
async def approve_draft(
    draft_id: uuid.UUID,
    actor: Approver,
    services: ServicesDep,
    expect: PreconditionsDep,
    response: Response,
) -> ApprovalOut:
    draft = await workflow.approve_draft(services.uow_factory(), actor, draft_id, expect=expect)
    set_validators(response, draft.version, draft.updated_at)
    assert draft.approved_at is not None
    return ApprovalOut(id=draft.id, status=draft.status, approved_at=draft.approved_at)


@router.post(
    "/{draft_id}/push",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PushOut,
    responses={202: {"headers": PUSH_HEADERS}, **responses(400, 404, 409, 412, 422, 428)},
    summary="Push an APPROVED draft to the ERP (asynchronous)",
    operation_id="push_draft",
)
async def push_draft(
    draft_id: uuid.UUID,
    actor: Pusher,
    services: ServicesDep,
    response: Response,
    expect: PreconditionsDep,
    idempotency_key: IdempotencyKey = None,
) -> PushOut:
    return await _push(services, actor, draft_id, Operation.PUSH, idempotency_key, response, expect)


@router.post(
    "/{draft_id}/retry-push",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PushOut,
    responses={202: {"headers": PUSH_HEADERS}, **responses(400, 404, 409, 412, 422, 428)},
    summary="Push a draft in ERROR again (new export id, next attempt number)",
    operation_id="retry_push",
)
async def retry_push(
    draft_id: uuid.UUID,
    actor: Pusher,
    services: ServicesDep,
    response: Response,
    expect: PreconditionsDep,
    idempotency_key: IdempotencyKey = None,
) -> PushOut:
    return await _push(
        services, actor, draft_id, Operation.RETRY_PUSH, idempotency_key, response, expect
    )


async def _push(
    services: ServicesDep,
    actor: Pusher,
    draft_id: uuid.UUID,
    operation: Operation,
    key: str | None,
    response: Response,
    expect: Preconditions,
) -> PushOut:
    try:
        result = await push.push_draft(
            services.uow_factory,
            services.cache,
            actor,
            push.PushDraft(
                draft_id=draft_id, operation=operation, idempotency_key=key, expect=expect
            ),
            key_ttl=services.idempotency_ttl,
        )
    except DomainError as error:
        count_refused_push(operation.value, error)
        raise
    count_push(operation.value, replayed=result.replayed)
    response.headers["Idempotent-Replayed"] = "true" if result.replayed else "false"
    return PushOut(
        erp_export_id=result.erp_export_id,
        status=result.status,
        draft_status=result.draft_status,
        export_status=result.export_status,
    )
