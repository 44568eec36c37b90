"""Domain events → versioned event contracts in CloudEvents envelopes, the one way.

Each service's `adapters/event_mapping.py` names its contracts and the entity each
event is about; its Postgres unit of work writes what `to_envelope` returns to the
outbox at commit. A domain event carries its contract's field names, so a contract
reads it as it is (`from_attributes`), nested snapshots included. The domain itself
never sees a contract (tests/unit/shared/test_contracts_out_of_domains.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from orderflow_shared.contracts import EventData
from orderflow_shared.contracts.services import Service, source_for, system_actor
from orderflow_shared.messaging.envelope import Envelope


class DomainEvent(Protocol):
    """What an envelope needs of any domain event besides its contract's fields."""

    @property
    def org_id(self) -> str: ...

    @property
    def actor_id(self) -> str | None: ...


Event = TypeVar("Event", bound=DomainEvent)


@dataclass(frozen=True)
class EventMapping(Generic[Event]):
    """`contracts`: the contract each domain event type is published as; `subject`:
    the entity an event is about (the envelope's subject and its Kafka key, so one
    partition keeps an entity's events in order)."""

    service: Service
    contracts: Mapping[type[Any], type[EventData]]
    subject: Callable[[Event], object]

    @property
    def source(self) -> str:
        return source_for(self.service)

    @property
    def system_actor(self) -> str:
        """The actor of an event no person caused (every event names one)."""
        return system_actor(self.service)

    def to_contract(self, event: Event) -> EventData:
        contract = self.contracts.get(type(event))
        if contract is None:
            raise TypeError(f"{type(event).__name__} is published as no contract")
        return contract.model_validate(event, from_attributes=True)

    def to_envelope(self, event: Event) -> Envelope:
        return Envelope.wrap(
            self.to_contract(event),
            source=self.source,
            subject=str(self.subject(event)),
            org_id=event.org_id,
            actor_id=event.actor_id or self.system_actor,
        )
