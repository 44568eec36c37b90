"""Kafka topic names of the integration contract."""

from __future__ import annotations

from enum import StrEnum


class Topic(StrEnum):
    DRAFT_CREATED = "draft.created"
    DRAFT_VALIDATED = "draft.validated"
    DRAFT_APPROVED = "draft.approved"
    DRAFT_PUSH_REQUESTED = "draft.push_requested"
    EXPORT_SENT = "export.sent"
    EXPORT_FAILED = "export.failed"
    EXPORT_DELAYED = "export.delayed"
    EXPORT_CIRCUIT_CHANGED = "export.circuit_changed"
    ERP_CONNECTION_CHANGED = "erp_connection.changed"
    DEAD_LETTER = "dead_letter"
    #: audit-service's signed chain heads, one record per org (key: org id)
    AUDIT_CHECKPOINT = "audit.checkpoint"


DEAD_LETTER_TOPIC = Topic.DEAD_LETTER
ALL_TOPICS: tuple[Topic, ...] = tuple(Topic)
#: Topics whose latest record per key is all that matters.
COMPACTED_TOPICS: frozenset[Topic] = frozenset(
    {Topic.ERP_CONNECTION_CHANGED, Topic.AUDIT_CHECKPOINT}
)
