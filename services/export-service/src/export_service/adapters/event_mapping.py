"""Domain events → versioned event contracts in CloudEvents envelopes.

The one place export-service's domain events become wire contracts (the unit of work
writes what `to_envelope` returns to the outbox at commit). A domain event carries its
contract's field names, so each contract reads it as is (`from_attributes`). The
envelope's subject and key are the entity the event is about (`entity_id`).
"""

from __future__ import annotations

from orderflow_shared.contracts import (
    ErpConnectionChangedV1,
    EventData,
    ExportCircuitChangedV1,
    ExportDelayedV1,
    ExportFailedV1,
    ExportSentV1,
)
from orderflow_shared.contracts.services import Service, source_for, system_actor
from orderflow_shared.messaging.envelope import Envelope

from export_service.domain import events

SOURCE = source_for(Service.EXPORT_SERVICE)
#: the actor of steps no person asked for (delivery results, retries, circuit changes)
SYSTEM_ACTOR = system_actor(Service.EXPORT_SERVICE)

#: the contract each domain event is published as
CONTRACTS: dict[type[events.DomainEvent], type[EventData]] = {
    events.ExportSent: ExportSentV1,
    events.ExportFailed: ExportFailedV1,
    events.ExportDelayed: ExportDelayedV1,
    events.ConnectionChanged: ErpConnectionChangedV1,
    events.CircuitMoved: ExportCircuitChangedV1,
}


def to_contract(event: events.DomainEvent) -> EventData:
    try:
        contract = CONTRACTS[type(event)]
    except KeyError:
        raise TypeError(f"{type(event).__name__} is published as no contract") from None
    return contract.model_validate(event, from_attributes=True)


def to_envelope(event: events.DomainEvent) -> Envelope:
    """The event's contract, under the entity it is about (its subject and key)."""
    return Envelope.wrap(
        to_contract(event),
        source=SOURCE,
        subject=str(event.entity_id),
        org_id=event.org_id,
        actor_id=event.actor_id or SYSTEM_ACTOR,
    )
