"""Domain events → versioned event contracts in CloudEvents envelopes."""

from __future__ import annotations

from orderflow_shared.contracts import (
    DraftApprovedV1,
    DraftCreatedV1,
    DraftPushRequestedV1,
    DraftValidatedV1,
    EventData,
    OrderSnapshot,
    ValidationIssue,
)
from orderflow_shared.contracts.services import Service, source_for, system_actor
from orderflow_shared.messaging.envelope import Envelope

from draft_api.domain import events

SOURCE = source_for(Service.DRAFT_API)
#: the actor of an event no person caused (every event names one)
SYSTEM_ACTOR = system_actor(Service.DRAFT_API)


def to_envelope(event: events.DomainEvent) -> Envelope:
    subject = str(event.draft_id)
    return Envelope.wrap(
        to_contract(event),
        source=SOURCE,
        subject=subject,
        key=subject,
        org_id=event.org_id,
        actor_id=event.actor_id or SYSTEM_ACTOR,
    )


def to_contract(event: events.DomainEvent) -> EventData:
    if isinstance(event, events.DraftCreated):
        return DraftCreatedV1(
            draft_id=event.draft_id,
            customer_id=event.customer_id,
            external_ref=event.external_ref,
            line_count=event.line_count,
            created_at=event.created_at,
        )
    if isinstance(event, events.DraftValidated):
        return DraftValidatedV1(
            draft_id=event.draft_id,
            status=event.status,
            issues=[
                ValidationIssue(field=i.field, code=i.code, message=i.message) for i in event.issues
            ],
            validated_at=event.validated_at,
        )
    if isinstance(event, events.DraftApproved):
        return DraftApprovedV1(
            draft_id=event.draft_id,
            approved_by_user_id=event.approved_by_user_id,
            approved_at=event.approved_at,
        )
    if isinstance(event, events.PushRequested):
        return DraftPushRequestedV1(
            draft_id=event.draft_id,
            erp_export_id=event.erp_export_id,
            attempt=event.attempt,
            is_retry=event.is_retry,
            requested_at=event.requested_at,
            order=_snapshot(event.order),
        )
    raise TypeError(f"no contract for {type(event).__name__}")


def _snapshot(order: events.OrderSnapshot) -> OrderSnapshot:
    """The domain snapshot carries the contract's field names: pydantic reads it as is."""
    return OrderSnapshot.model_validate(order, from_attributes=True)
