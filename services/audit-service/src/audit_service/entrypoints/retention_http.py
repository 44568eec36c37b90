"""`GET|PUT /audit-log/retention`: the caller's org's retention policy (role admin)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException
from orderflow_shared.web import JsonInteger, error_responses, require_json_body
from pydantic import BaseModel, ConfigDict, Field

from audit_service.domain.retention import MAX_DAYS, MIN_DAYS, InvalidPolicy, RetentionPolicy
from audit_service.entrypoints.deps import Admin, ContainerDep
from audit_service.service_layer.retention import policy_of, set_policy


class RetentionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retention_days: Annotated[int, JsonInteger(MIN_DAYS, MAX_DAYS)] = Field(
        description="Entries that happened more than this many days ago are archived, then pruned.",
        examples=[365],
    )


class RetentionOut(BaseModel):
    org_id: str
    retention_days: int = Field(examples=[365])
    source: Literal["default", "org"] = Field(
        description="`org`: set for this org; `default`: AUDIT_RETENTION_DAYS of the service."
    )
    default_days: int = Field(description="The service's default (AUDIT_RETENTION_DAYS).")
    as_of: datetime | None = Field(
        default=None, description="Entries older than this are past retention now."
    )

    @classmethod
    def of(cls, policy: RetentionPolicy, default_days: int) -> RetentionOut:
        return cls(
            org_id=policy.org_id,
            retention_days=policy.days,
            source=policy.source,
            default_days=default_days,
            as_of=policy.cutoff(datetime.now(UTC)),
        )


retention_router = APIRouter(tags=["audit retention"])


@retention_router.get(
    "/audit-log/retention",
    response_model=RetentionOut,
    operation_id="get_audit_retention",
    responses=error_responses(400, 401, 403, descriptions={403: "Requires the role admin"}),
)
async def get_retention(principal: Admin, container: ContainerDep) -> RetentionOut:
    """The caller's org's retention policy (its own, or the service's default)."""
    default = container.settings.audit_retention_days
    policy = await policy_of(container.uow_factory, principal.org_id, default)
    return RetentionOut.of(policy, default)


@retention_router.put(
    "/audit-log/retention",
    response_model=RetentionOut,
    operation_id="set_audit_retention",
    dependencies=[Depends(require_json_body)],
    responses=error_responses(
        400,
        401,
        403,
        413,
        415,
        422,
        descriptions={403: "Requires the role admin", 422: "retention_days not in 1..36500"},
    ),
)
async def put_retention(
    body: RetentionIn, principal: Admin, container: ContainerDep
) -> RetentionOut:
    """Set the caller's org's retention in days (idempotent). The next retention run
    archives and prunes what is past it; entries already pruned stay in their archives."""
    try:
        policy = await set_policy(
            container.uow_factory, principal.org_id, body.retention_days, principal.user_id
        )
    except InvalidPolicy as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return RetentionOut.of(policy, container.settings.audit_retention_days)
