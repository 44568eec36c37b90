"""CloudEvents binary-mode envelope: attributes in Kafka headers, event data as the value.

Headers (CloudEvents Kafka protocol binding, binary content mode): `ce_id`, `ce_type`,
`ce_source`, `ce_specversion`, `ce_time`, `ce_subject`, the extensions `ce_orgid` (the
organisation) and `ce_actorid` (who or what caused the event: a user id or
`system:<service>`, never empty), `content-type` and, when known, `traceparent`.
Records written before the extensions had the `ce_` prefix carry `orgid` / `actorid`;
`from_kafka` reads both forms (the prefixed one wins, and the two must not disagree).
The `source` and system-actor conventions live in `orderflow_shared.contracts.services`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from orderflow_shared.contracts.events import EventData, EventSpec, spec_for_model, spec_for_type

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
#: Extension attributes as the Kafka binding names them (`ce_` + lowercase alphanumeric).
ORG_HEADER = "ce_orgid"
ACTOR_HEADER = "ce_actorid"
#: Their names before the `ce_` prefix (records already in the topics); read, never written.
LEGACY_ORG_HEADER = "orgid"
LEGACY_ACTOR_HEADER = "actorid"
#: Every header a producer of this package writes (the AsyncAPI headers schema lists them).
REQUIRED_HEADERS = (
    "ce_id",
    "ce_type",
    "ce_source",
    "ce_specversion",
    "ce_time",
    "ce_subject",
    ORG_HEADER,
    ACTOR_HEADER,
    "content-type",
)

Headers = list[tuple[str, bytes]]


class EnvelopeError(ValueError):
    """A record that is not a readable OrderFlow event (goes to the dead-letter topic)."""


@dataclass(frozen=True)
class Envelope:
    """One event as it travels: CloudEvents attributes plus the JSON data bytes."""

    id: uuid.UUID
    type: str
    source: str
    subject: str
    time: datetime
    org_id: str
    actor_id: str | None  # None only on records written before every event had an actor
    data: bytes
    key: str
    traceparent: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    #: the topic the record was read from (None for an envelope built here); `topic` is
    #: where its type belongs, which a hostile producer may not have respected
    record_topic: str | None = None
    #: `parse()`'s result, kept once made (a consumer's decode step, its trust check and
    #: its handler each ask for it); `dataclasses.replace` carries it over, so give
    #: `parsed=None` when replacing `type` or `data`
    parsed: EventData | None = field(default=None, compare=False, repr=False)

    @classmethod
    def wrap(
        cls,
        data: EventData,
        *,
        source: str,
        subject: str,
        org_id: str,
        actor_id: str,
        key: str | None = None,
        event_id: uuid.UUID | None = None,
        time: datetime | None = None,
        traceparent: str | None = None,
    ) -> Envelope:
        spec = spec_for_model(type(data))
        if not actor_id:
            raise ValueError("every event has an actor: a user id or system:<service>")
        return cls(
            id=event_id or uuid.uuid4(),
            type=spec.ce_type,
            source=source,
            subject=subject,
            time=time or datetime.now(UTC),
            org_id=org_id,
            actor_id=actor_id,
            data=data.model_dump_json().encode(),
            key=key or subject,
            traceparent=traceparent,
        )

    @property
    def spec(self) -> EventSpec:
        return spec_for_type(self.type)

    @property
    def topic(self) -> str:
        return str(self.spec.topic)

    def kafka_headers(self) -> Headers:
        headers: Headers = [
            ("ce_id", str(self.id).encode()),
            ("ce_type", self.type.encode()),
            ("ce_source", self.source.encode()),
            ("ce_specversion", SPEC_VERSION.encode()),
            ("ce_time", self.time.isoformat().encode()),
            ("ce_subject", self.subject.encode()),
            (ORG_HEADER, self.org_id.encode()),
            (ACTOR_HEADER, (self.actor_id or "").encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]
        if self.traceparent:
            headers.append(("traceparent", self.traceparent.encode()))
        return headers

    def parse(self) -> EventData:
        """The typed event data; EnvelopeError when the type is unknown or data invalid.
        Validated once per envelope: later calls return the same object."""
        if self.parsed is not None:
            return self.parsed
        try:
            spec = spec_for_type(self.type)
        except KeyError as exc:
            raise EnvelopeError(f"unknown event type {self.type!r}") from exc
        try:
            parsed = spec.model.model_validate_json(self.data)
        except ValidationError as exc:
            raise EnvelopeError(f"invalid {self.type} data: {exc.error_count()} error(s)") from exc
        object.__setattr__(self, "parsed", parsed)  # frozen: a cache, not a change of value
        return parsed

    @classmethod
    def from_kafka(
        cls,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        *,
        topic: str | None = None,
    ) -> Envelope:
        """Read a record's headers and value; EnvelopeError when anything required is off."""
        h: dict[str, str] = {}
        try:
            for name, raw in headers or ():
                h[name] = raw.decode() if raw is not None else ""
        except UnicodeDecodeError as exc:
            raise EnvelopeError("header is not UTF-8") from exc
        org_id = _extension(h, ORG_HEADER, LEGACY_ORG_HEADER)
        actor_id = _extension(h, ACTOR_HEADER, LEGACY_ACTOR_HEADER)
        missing = [
            n for n in ("ce_id", "ce_type", "ce_source", "ce_time", "ce_subject") if not h.get(n)
        ]
        if not org_id:
            missing.append(ORG_HEADER)
        if missing:
            raise EnvelopeError(f"missing header(s): {', '.join(missing)}")
        if h.get("ce_specversion", SPEC_VERSION) != SPEC_VERSION:
            raise EnvelopeError(f"unsupported ce_specversion {h['ce_specversion']!r}")
        if value is None:
            raise EnvelopeError("record has no value")
        try:
            json.loads(value)
        except (ValueError, RecursionError) as exc:  # deep nesting must not escape either
            raise EnvelopeError("value is not JSON") from exc
        try:
            event_id = uuid.UUID(h["ce_id"])
            time = datetime.fromisoformat(h["ce_time"])
        except ValueError as exc:
            raise EnvelopeError(f"bad ce_id or ce_time: {exc}") from exc
        known = {*REQUIRED_HEADERS, LEGACY_ORG_HEADER, LEGACY_ACTOR_HEADER, "traceparent"}
        return cls(
            id=event_id,
            type=h["ce_type"],
            source=h["ce_source"],
            subject=h["ce_subject"],
            time=time,
            org_id=org_id,
            actor_id=actor_id or None,
            data=value,
            key=(key or b"").decode(errors="replace"),
            traceparent=h.get("traceparent"),
            extra_headers={k: v for k, v in h.items() if k not in known},
            record_topic=topic,
        )

    def data_json(self) -> Any:
        return json.loads(self.data)


def _extension(headers: dict[str, str], name: str, legacy: str) -> str:
    """An extension's value from its `ce_` header or its legacy name; they must agree."""
    value, old = headers.get(name, ""), headers.get(legacy, "")
    if value and old and value != old:
        raise EnvelopeError(f"headers {name} and {legacy} disagree")
    return value or old
