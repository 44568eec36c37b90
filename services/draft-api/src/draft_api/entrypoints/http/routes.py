"""Routes of /draft-orders: each maps HTTP to one use case."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.types import DecoratedCallable
from orderflow_shared.preconditions import Preconditions
from orderflow_shared.web import (
    VALIDATOR_HEADERS,
    PreconditionsDep,
    links_by_id,
    set_validators,
)
from pydantic import BaseModel

from draft_api.domain.errors import DomainError
from draft_api.domain.idempotency import Operation
from draft_api.domain.model import Actor, DraftOrder, DraftStatus
from draft_api.entrypoints.http.dependencies import (
    Approver,
    JsonBody,
    Operator,
    Pusher,
    Reader,
    Services,
    ServicesDep,
    get_services,
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
from draft_api.service_layer.ports import DraftQuery, UnitOfWork

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
#: the answers of a step on one draft (validate, approve) and of a push
STEP_RESPONSES = {200: {"headers": VALIDATOR_HEADERS}, **responses(404, 409, 412, 422, 428)}
PUSH_RESPONSES = {202: {"headers": PUSH_HEADERS}, **responses(400, 404, 409, 412, 422, 428)}


class DraftUseCase(Protocol):
    def __call__(
        self, uow: UnitOfWork, actor: Actor, draft_id: uuid.UUID, *, expect: Preconditions
    ) -> Awaitable[DraftOrder]: ...


@dataclass(frozen=True)
class DraftStep:
    """What a route that changes one draft takes besides its caller and body: the
    draft's id, the wiring, the request's preconditions and the response."""

    draft_id: uuid.UUID
    services: Services
    expect: Preconditions
    response: Response

    async def run(self, use_case: DraftUseCase, actor: Actor) -> DraftOrder:
        draft = await use_case(
            self.services.uow_factory(), actor, self.draft_id, expect=self.expect
        )
        return self.answered(draft)

    def answered(self, draft: DraftOrder) -> DraftOrder:
        """The draft, with its ETag and Last-Modified set on the response."""
        set_validators(self.response, draft.version, draft.updated_at)
        return draft


async def _draft_step(
    draft_id: uuid.UUID, request: Request, expect: PreconditionsDep, response: Response
) -> DraftStep:
    # the wiring read here rather than through ServicesDep: a level of dependencies less
    return DraftStep(draft_id, await get_services(request), expect, response)


DraftStepDep = Annotated[DraftStep, Depends(_draft_step)]


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
    query = DraftQuery(limit, offset, status_, search=(q or "").strip() or None)
    page, total = await drafts.list_drafts(services.uow_factory(), actor, query)
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
async def edit_draft(body: DraftPatch, actor: Operator, step: DraftStepDep) -> DraftOut:
    sent = body.model_fields_set
    draft = await drafts.edit_draft(
        step.services.uow_factory(),
        actor,
        drafts.EditDraft(
            draft_id=step.draft_id,
            customer_id=None if body.customer_id is None else body.customer_id.strip(),
            external_ref=(body.external_ref or "").strip() or None,
            clear_external_ref="external_ref" in sent and not (body.external_ref or "").strip(),
            lines=None if body.lines is None else [line.to_domain() for line in body.lines],
            expect=step.expect,
        ),
    )
    return DraftOut.of(step.answered(draft))


def _step_route(
    path: str, answer: type[BaseModel], operation_id: str, summary: str
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """The route of a step on one draft (validate, approve; it takes preconditions)."""
    return router.post(
        path,
        response_model=answer,
        responses=STEP_RESPONSES,
        summary=summary,
        operation_id=operation_id,
    )


@_step_route(
    "/{draft_id}/validate",
    ValidationOut,
    "validate_draft",
    "Run the validation rules: READY, or NEEDS_REVIEW with the issues",
)
async def validate_draft(actor: Operator, step: DraftStepDep) -> ValidationOut:
    draft = await step.run(workflow.validate_draft, actor)
    return ValidationOut(
        id=draft.id,
        status=draft.status,
        issues=[IssueOut(**vars(i)) for i in draft.validation_issues],
    )


@_step_route(
    "/{draft_id}/approve", ApprovalOut, "approve_draft", "Approve a READY draft (role approver)"
)
async def approve_draft(actor: Approver, step: DraftStepDep) -> ApprovalOut:
    draft = await step.run(workflow.approve_draft, actor)
    assert draft.approved_at is not None
    return ApprovalOut(id=draft.id, status=draft.status, approved_at=draft.approved_at)


def _push_route(path: str, operation: Operation, operation_id: str, summary: str) -> None:
    """The route of a push or a retry-push: they differ only in their operation."""

    @router.post(
        path,
        status_code=status.HTTP_202_ACCEPTED,
        response_model=PushOut,
        responses=PUSH_RESPONSES,
        summary=summary,
        operation_id=operation_id,
        name=operation_id,
    )
    async def route(
        actor: Pusher, step: DraftStepDep, idempotency_key: IdempotencyKey = None
    ) -> PushOut:
        return await _push(step, actor, operation, idempotency_key)


_push_route(
    "/{draft_id}/push",
    Operation.PUSH,
    "push_draft",
    "Push an APPROVED draft to the ERP (asynchronous)",
)
_push_route(
    "/{draft_id}/retry-push",
    Operation.RETRY_PUSH,
    "retry_push",
    "Push a draft in ERROR again (new export id, next attempt number)",
)


async def _push(step: DraftStep, actor: Actor, operation: Operation, key: str | None) -> PushOut:
    try:
        result = await push.push_draft(
            step.services.uow_factory,
            step.services.cache,
            actor,
            push.PushDraft(
                draft_id=step.draft_id, operation=operation, idempotency_key=key, expect=step.expect
            ),
            key_ttl=step.services.idempotency_ttl,
        )
    except DomainError as error:
        count_refused_push(operation.value, error)
        raise
    count_push(operation.value, replayed=result.replayed)
    step.response.headers["Idempotent-Replayed"] = "true" if result.replayed else "false"
    return PushOut(
        erp_export_id=result.erp_export_id,
        status=result.status,
        draft_status=result.draft_status,
        export_status=result.export_status,
    )
