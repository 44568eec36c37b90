"""From what Kafka delivers to audit entries.

A readable event maps to its contract's action; a record read back from the
dead-letter topic maps to `UNREADABLE_EVENT`, with an event id derived from where the
original record sat (topic/partition/offset), so every copy of the same poison record
(each consumer that rejected it dead-letters it) gives the same single entry.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orderflow_shared.contracts.events import UNREADABLE_AUDIT_ACTION, audit_action_for
from orderflow_shared.messaging.envelope import Envelope

from audit_service.domain.entry import AuditEntry, with_occurred_at_utc

#: Namespace of the deterministic ids of UNREADABLE_EVENT entries.
UNREADABLE_NAMESPACE = uuid.UUID("5f0c7a52-1d0e-4b8e-9a57-3c2d7f1e6a10")
#: Org of a poison record that does not even say which org it belongs to.
UNKNOWN_ORG = "_unknown"
UNREADABLE_ENTITY_TYPE = "kafka_record"
DLT_HEADERS = ("dlt_reason", "dlt_topic", "dlt_partition", "dlt_offset", "dlt_consumer")
#: Headers kept (decoded) in the data of an UNREADABLE_EVENT entry for forensics.
_KEPT_HEADERS = ("ce_id", "ce_type", "ce_source", "ce_time", "ce_subject", "orgid", "actorid")
_MAX_HEADER_CHARS = 512


@dataclass(frozen=True)
class RawRecord:
    """A Kafka record as read (used for the dead-letter topic, which may hold anything)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    headers: Sequence[tuple[str, bytes | None]]


def entry_from_envelope(envelope: Envelope) -> AuditEntry:
    """The entry of a readable event (EnvelopeError if its data does not parse)."""
    data = envelope.parse()
    spec = envelope.spec
    return with_occurred_at_utc(
        AuditEntry(
            event_id=envelope.id,
            org_id=_json_safe(envelope.org_id),
            action=audit_action_for(data),
            entity_type=spec.entity_type,
            entity_id=_json_safe(envelope.subject),
            actor_user_id=_json_safe(envelope.actor_id),
            occurred_at=envelope.time,
            source_topic=envelope.topic,
            data=_json_safe(envelope.data_json()),
        )
    )


def unreadable_event_id(topic: str, partition: int, offset: int) -> uuid.UUID:
    return uuid.uuid5(UNREADABLE_NAMESPACE, f"{topic}/{partition}/{offset}")


def entry_from_dead_letter(record: RawRecord) -> AuditEntry:
    """The UNREADABLE_EVENT entry of a record found on the dead-letter topic."""
    headers = _decoded_headers(record.headers)
    origin = _origin(headers, record)
    dlt = {name: headers[name] for name in DLT_HEADERS if name in headers}
    kept = {name: headers[name] for name in _KEPT_HEADERS if name in headers}
    topic, partition, offset = origin
    return AuditEntry(
        event_id=unreadable_event_id(topic, partition, offset),
        org_id=_json_safe(headers.get("orgid")) or UNKNOWN_ORG,
        action=UNREADABLE_AUDIT_ACTION,
        entity_type=UNREADABLE_ENTITY_TYPE,
        entity_id=_json_safe(f"{topic}/{partition}/{offset}"),
        actor_user_id=_json_safe(headers.get("actorid")) or None,
        occurred_at=_record_time(record.timestamp_ms),
        source_topic=record.topic,
        data=_json_safe({**dlt, "original_headers": kept}),
    )


def _record_time(timestamp_ms: int) -> datetime:
    """The record's timestamp; the epoch when a producer set one out of range."""
    try:
        return datetime.fromtimestamp(max(timestamp_ms, 0) / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return datetime.fromtimestamp(0, tz=UTC)


def _origin(headers: dict[str, str], record: RawRecord) -> tuple[str, int, int]:
    """Where the poison record first sat; the dead letter itself if that is not said."""
    try:
        return headers["dlt_topic"], int(headers["dlt_partition"]), int(headers["dlt_offset"])
    except (KeyError, ValueError):
        return record.topic, record.partition, record.offset


def _decoded_headers(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    decoded: dict[str, str] = {}
    for name, raw in headers or ():
        value = (raw or b"").decode("utf-8", errors="replace")[:_MAX_HEADER_CHARS]
        decoded.setdefault(name, value)
    return decoded


def _json_safe(value: Any) -> Any:
    """What Postgres text and jsonb accept: no NUL characters, no NaN or infinities."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_json_safe(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
