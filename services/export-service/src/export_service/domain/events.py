"""A domain event as the aggregates record it: the contract data plus routing facts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from orderflow_shared.contracts import EventData


@dataclass(frozen=True)
class Message:
    data: EventData
    subject: str
    key: str
    org_id: str
    actor_id: str | None = None

    @classmethod
    def about(
        cls, data: EventData, entity_id: uuid.UUID, org_id: str, actor_id: str | None = None
    ) -> Message:
        """An event of one entity, keyed by its id: one partition keeps its events in
        order, and compaction keeps its latest."""
        subject = str(entity_id)
        return cls(data=data, subject=subject, key=subject, org_id=org_id, actor_id=actor_id)
