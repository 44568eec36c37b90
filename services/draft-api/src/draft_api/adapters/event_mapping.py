"""The contract each of draft-api's domain events is published as, and the draft it is
about (orderflow_shared.messaging.event_mapping): the one place they become contracts."""

from __future__ import annotations

from orderflow_shared.contracts import (
    DraftApprovedV1,
    DraftCreatedV1,
    DraftPushRequestedV1,
    DraftValidatedV1,
)
from orderflow_shared.contracts.services import Service
from orderflow_shared.messaging.event_mapping import EventMapping

from draft_api.domain import events

MAPPING = EventMapping[events.DomainEvent](
    service=Service.DRAFT_API,
    contracts={
        events.DraftCreated: DraftCreatedV1,
        events.DraftValidated: DraftValidatedV1,
        events.DraftApproved: DraftApprovedV1,
        events.PushRequested: DraftPushRequestedV1,
    },
    subject=lambda event: event.draft_id,
)
