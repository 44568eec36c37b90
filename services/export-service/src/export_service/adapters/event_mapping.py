"""The contract each of export-service's domain events is published as, and the entity
it is about (orderflow_shared.messaging.event_mapping): the one place they become
contracts."""

from __future__ import annotations

from orderflow_shared.contracts import (
    ErpConnectionChangedV1,
    ExportCircuitChangedV1,
    ExportDelayedV1,
    ExportFailedV1,
    ExportSentV1,
)
from orderflow_shared.contracts.services import Service
from orderflow_shared.messaging.event_mapping import EventMapping

from export_service.domain import events

MAPPING = EventMapping[events.DomainEvent](
    service=Service.EXPORT_SERVICE,
    contracts={
        events.ExportSent: ExportSentV1,
        events.ExportFailed: ExportFailedV1,
        events.ExportDelayed: ExportDelayedV1,
        events.ConnectionChanged: ErpConnectionChangedV1,
        events.CircuitMoved: ExportCircuitChangedV1,
    },
    subject=lambda event: event.entity_id,
)
