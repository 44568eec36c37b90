"""From what Kafka delivers to audit entries.

A readable event maps to its contract's action; a record read back from the
dead-letter topic maps to `UNREADABLE_EVENT`, with an event id derived from where the
original record sat (topic/partition/offset), so every copy of the same poison record
(each consumer that rejected it dead-letters it) gives the same single entry.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orderflow_shared.contracts.events import (
    UNREADABLE_AUDIT_ACTION,
    UNTRUSTED_AUDIT_ACTION,
    DraftPushRequestedV1,
    ErpConnectionChangedV1,
    EventData,
    audit_action_for,
)
from orderflow_shared.contracts.services import producer_of, source_matches
from orderflow_shared.messaging.envelope import (
    ACTOR_HEADER,
    LEGACY_ACTOR_HEADER,
    LEGACY_ORG_HEADER,
    ORG_HEADER,
    REQUIRED_HEADERS,
    Envelope,
)

from audit_service.domain.entry import AuditEntry, as_utc

#: Namespace of the deterministic ids of UNREADABLE_EVENT entries.
UNREADABLE_NAMESPACE = uuid.UUID("5f0c7a52-1d0e-4b8e-9a57-3c2d7f1e6a10")
#: Org of a poison record that does not even say which org it belongs to.
UNKNOWN_ORG = "_unknown"
#: Chain of UNTRUSTED_EVENT entries: outside every organisation's chain (no org may be
#: named so: org ids of the demo and of tokens never start with `_`).
UNTRUSTED_ORG = "_untrusted"
#: `dlt_reason` of a readable record a consumer refused (ConsumerRunner's `refuse`)
REFUSED_PREFIX = "refused:"
UNREADABLE_ENTITY_TYPE = "kafka_record"
DLT_HEADERS = ("dlt_reason", "dlt_topic", "dlt_partition", "dlt_offset", "dlt_consumer")
#: Headers kept (decoded) in the data of an UNREADABLE_EVENT entry for forensics: the
#: event's attributes, in either form of the extensions.
_KEPT_HEADERS = (
    *(name for name in REQUIRED_HEADERS if name not in ("ce_specversion", "content-type")),
    LEGACY_ORG_HEADER,
    LEGACY_ACTOR_HEADER,
)
_MAX_HEADER_CHARS = 512


@dataclass(frozen=True)
class RawRecord:
    """A Kafka record as read (used for the dead-letter topic, which may hold anything)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    headers: Sequence[tuple[str, bytes | None]]


def payload_org(data: EventData) -> str | None:
    """The org the event's data names, for the types that carry one."""
    if isinstance(data, ErpConnectionChangedV1):
        return data.org_id
    if isinstance(data, DraftPushRequestedV1):
        return data.order.org_id
    return None


def distrust(envelope: Envelope, data: EventData) -> list[str]:
    """What contradicts itself in a readable event (empty: nothing).

    With the broker's ACLs only one principal may write each topic, so the topic a
    record was read from names its producer. The event type must be one that producer
    makes (on any of its topics, so a topic added later is read like the others), the
    CloudEvents source must name that producer, and the envelope's org must be the org
    the data name.
    """
    topic = envelope.record_topic or envelope.topic
    producer = producer_of(topic)
    reasons = []
    owner = producer_of(envelope.topic)
    if producer is not owner:
        reasons.append(
            f"{envelope.type} is {owner.value if owner else None!r}'s, "
            f"read from {topic} ({producer.value if producer else None!r} writes it)"
        )
    if not source_matches(topic, envelope.source):
        reasons.append(
            f"source {envelope.source[:200]!r} is not {topic}'s producer "
            f"{producer.value if producer else None!r}"
        )
    claimed = payload_org(data)
    if claimed is not None and claimed != envelope.org_id:
        reasons.append(
            f"envelope org {envelope.org_id[:200]!r} is not the data's org {claimed[:200]!r}"
        )
    return reasons


def entry_from_envelope(envelope: Envelope) -> AuditEntry:
    """The entry of a readable event (EnvelopeError if its data does not parse).

    `source_topic` is the topic the record was read from and `producer` the service
    that alone may write it; an event whose claims disagree (see `distrust`) becomes an
    UNTRUSTED_EVENT entry in the `_untrusted` chain, never in an organisation's.
    """
    data = envelope.parse()
    spec = envelope.spec
    topic = envelope.record_topic or envelope.topic
    producer = producer_of(topic)
    reasons = distrust(envelope, data)
    if reasons:
        return _untrusted(envelope, data, topic, producer.value if producer else None, reasons)
    return AuditEntry(
        event_id=envelope.id,
        org_id=_json_safe(envelope.org_id),
        action=audit_action_for(data),
        entity_type=spec.entity_type,
        entity_id=_json_safe(envelope.subject),
        actor_user_id=_json_safe(envelope.actor_id),
        occurred_at=as_utc(envelope.time),
        source_topic=topic,
        data=json_data(envelope.data),
        producer=producer.value if producer else None,
    )


def _untrusted(
    envelope: Envelope,
    data: EventData,
    topic: str,
    producer: str | None,
    reasons: list[str],
) -> AuditEntry:
    return AuditEntry(
        event_id=envelope.id,
        org_id=UNTRUSTED_ORG,
        action=UNTRUSTED_AUDIT_ACTION,
        entity_type=envelope.spec.entity_type,
        entity_id=_json_safe(envelope.subject),
        actor_user_id=_json_safe(envelope.actor_id),
        occurred_at=as_utc(envelope.time),
        source_topic=topic,
        producer=producer,
        data=_json_safe(
            {
                "reasons": reasons,
                "type": envelope.type,
                "source": envelope.source,
                "envelope_org": envelope.org_id,
                "data_org": payload_org(data),
                "claimed_action": audit_action_for(data),
                "data": json_data(envelope.data),
            }
        ),
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
    # a record a consumer refused for contradicting itself names an org it may not
    # speak for: filed with the untrusted entries, not in that org's chain
    refused = headers.get("dlt_reason", "").startswith(REFUSED_PREFIX)
    return AuditEntry(
        event_id=unreadable_event_id(topic, partition, offset),
        org_id=UNTRUSTED_ORG if refused else _dead_letter_org(headers),
        action=UNREADABLE_AUDIT_ACTION,
        entity_type=UNREADABLE_ENTITY_TYPE,
        entity_id=_json_safe(f"{topic}/{partition}/{offset}"),
        actor_user_id=_json_safe(headers.get(ACTOR_HEADER) or headers.get(LEGACY_ACTOR_HEADER))
        or None,
        occurred_at=_record_time(record.timestamp_ms),
        source_topic=record.topic,
        data=_json_safe({**dlt, "original_headers": kept}),
    )


def _dead_letter_org(headers: dict[str, str]) -> str:
    found = _json_safe(headers.get(ORG_HEADER) or headers.get(LEGACY_ORG_HEADER))
    return str(found) if found else UNKNOWN_ORG


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


def json_data(raw: bytes) -> Any:
    """An event's JSON data as Postgres jsonb takes it, read once: NaN and infinities
    become their names (as `_json_safe` makes them), and only data that spells a NUL
    character (`\\u0000`) is walked to replace it."""
    text = raw.decode(json.detect_encoding(raw), "surrogatepass")  # as json.loads reads it
    value = json.loads(text, parse_float=_finite_float, parse_constant=_nonfinite_name)
    if "\\u0000" in text:
        return _json_safe(value)
    return value


def _finite_float(token: str) -> float | str:
    number = float(token)
    return number if math.isfinite(number) else str(number)  # 1e999 overflows to inf


def _nonfinite_name(token: str) -> str:
    return str(float(token))  # NaN, Infinity, -Infinity: 'nan', 'inf', '-inf'


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
