"""A domain event as the aggregates record it: the contract data plus routing facts."""

from __future__ import annotations

from dataclasses import dataclass

from orderflow_shared.contracts import EventData


@dataclass(frozen=True)
class Message:
    data: EventData
    subject: str
    key: str
    org_id: str
    actor_id: str | None = None
