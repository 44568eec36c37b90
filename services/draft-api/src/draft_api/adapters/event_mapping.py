"""Domain events → versioned event contracts in CloudEvents envelopes.

The one place draft-api's domain events become wire contracts (the unit of work writes
what `to_envelope` returns to the outbox). A domain event carries its contract's field
names, so each contract reads it as is (`from_attributes`), nested snapshots included.
"""

from __future__ import annotations

from orderflow_shared.contracts import (
    DraftApprovedV1,
    DraftCreatedV1,
    DraftPushRequestedV1,
    DraftValidatedV1,
    EventData,
)
from orderflow_shared.contracts.services import Service, source_for, system_actor
from orderflow_shared.messaging.envelope import Envelope

from draft_api.domain import events

SOURCE = source_for(Service.DRAFT_API)
#: the actor of an event no person caused (every event names one)
SYSTEM_ACTOR = system_actor(Service.DRAFT_API)

#: the contract each domain event is published as
CONTRACTS: dict[type[events.DomainEvent], type[EventData]] = {
    events.DraftCreated: DraftCreatedV1,
    events.DraftValidated: DraftValidatedV1,
    events.DraftApproved: DraftApprovedV1,
    events.PushRequested: DraftPushRequestedV1,
}


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
    contract = CONTRACTS.get(type(event))
    if contract is None:
        raise TypeError(f"no contract for {type(event).__name__}")
    return contract.model_validate(event, from_attributes=True)
