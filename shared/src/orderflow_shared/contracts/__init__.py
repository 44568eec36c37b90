"""Event contracts: topics, event data models and the registry that ties them together."""

from orderflow_shared.contracts.events import (
    AUDIT_ACTIONS,
    EVENT_TYPES,
    DraftApprovedV1,
    DraftCreatedV1,
    DraftPushRequestedV1,
    DraftValidatedV1,
    ErpConnectionChangedV1,
    EventData,
    EventSpec,
    ExportFailedV1,
    ExportSentV1,
    OrderLineSnapshot,
    OrderSnapshot,
    ValidationIssue,
    spec_for_model,
    spec_for_type,
)
from orderflow_shared.contracts.topics import ALL_TOPICS, DEAD_LETTER_TOPIC, Topic

__all__ = [
    "ALL_TOPICS",
    "AUDIT_ACTIONS",
    "DEAD_LETTER_TOPIC",
    "EVENT_TYPES",
    "DraftApprovedV1",
    "DraftCreatedV1",
    "DraftPushRequestedV1",
    "DraftValidatedV1",
    "ErpConnectionChangedV1",
    "EventData",
    "EventSpec",
    "ExportFailedV1",
    "ExportSentV1",
    "OrderLineSnapshot",
    "OrderSnapshot",
    "Topic",
    "ValidationIssue",
    "spec_for_model",
    "spec_for_type",
]
