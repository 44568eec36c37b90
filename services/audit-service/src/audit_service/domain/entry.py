"""Audit entries and the hash chain that makes the log tamper-evident.

Each org has its own chain: an entry's `hash` is SHA-256 over the previous entry's
hash (hex) followed by the entry's canonical JSON. The first entry of an org links to
`GENESIS_HASH`. Deleting, reordering or altering a row breaks a link the verifier finds.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
#: sorted keys, no whitespace, no NaN: the one JSON form hashed
_CANONICAL_JSON = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)

JsonValue = Any


@dataclass(frozen=True)
class AuditEntry:
    """One audited fact, as mapped from an event (before it joins its org's chain)."""

    event_id: uuid.UUID
    org_id: str
    action: str
    entity_type: str
    entity_id: str
    actor_user_id: str | None
    occurred_at: datetime
    source_topic: str
    data: Mapping[str, JsonValue]
    #: the service whose Kafka principal alone may write `source_topic` (None: unknown,
    #: e.g. entries recorded before it was kept, or read from the dead-letter topic)
    producer: str | None = None

    def canonical(self) -> bytes:
        """The bytes the hash covers: sorted keys, no whitespace, UTC microseconds.

        `producer` is covered when known; entries without it hash as they always did,
        so chains written before it existed still verify."""
        body = {
            **entry_values(self),
            "event_id": str(self.event_id),
            "occurred_at": canonical_time(self.occurred_at),
        }
        if self.producer is None:
            del body["producer"]
        return _CANONICAL_JSON.encode(body).encode()


#: The names of AuditEntry's fields, in order (the log's columns of the same names).
ENTRY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(AuditEntry))


def entry_values(entry: AuditEntry) -> dict[str, JsonValue]:
    """The entry's fields by name (the log's columns of the same names)."""
    return {name: getattr(entry, name) for name in ENTRY_FIELDS}


def entry_of(values: Mapping[Any, JsonValue]) -> AuditEntry:
    """The entry in a row (or an archive line) whose columns carry the fields' names."""
    return AuditEntry(**{name: values[name] for name in ENTRY_FIELDS})


@dataclass(frozen=True)
class ChainedEntry:
    """An entry with its place in the chain."""

    entry: AuditEntry
    prev_hash: str
    hash: str


def canonical_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def link_hash(prev_hash: str, entry: AuditEntry) -> str:
    digest = hashlib.sha256()
    digest.update(prev_hash.encode())
    digest.update(entry.canonical())
    return digest.hexdigest()


def chain(entries: Iterable[AuditEntry], heads: Mapping[str, str]) -> list[ChainedEntry]:
    """Link entries (in the given order) onto each org's current head hash."""
    current = dict(heads)
    linked: list[ChainedEntry] = []
    for entry in entries:
        prev = current.get(entry.org_id, GENESIS_HASH)
        digest = link_hash(prev, entry)
        linked.append(ChainedEntry(entry=entry, prev_hash=prev, hash=digest))
        current[entry.org_id] = digest
    return linked


def unique_by_event_id(entries: Sequence[AuditEntry]) -> list[AuditEntry]:
    """First occurrence of each event id, order kept (a batch may hold a redelivery)."""
    seen: set[uuid.UUID] = set()
    unique: list[AuditEntry] = []
    for entry in entries:
        if entry.event_id not in seen:
            seen.add(entry.event_id)
            unique.append(entry)
    return unique


def as_utc(moment: datetime) -> datetime:
    """The moment, timezone-aware in UTC (a naive time is read as UTC; one beyond the
    calendar's edge once in UTC becomes that edge)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    if moment.tzinfo is UTC:
        return moment
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00 lies before datetime.min in UTC
        edge = datetime.min if moment.year == 1 else datetime.max
        return edge.replace(tzinfo=UTC)
