"""Reading the log: filters, page size and the opaque keyset cursor."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MAX_LIMIT = 500
DEFAULT_LIMIT = 100


class InvalidQuery(ValueError):
    """A filter or cursor the caller got wrong (a 422 at the HTTP edge)."""


@dataclass(frozen=True)
class Position:
    """Where a page ended: entries are ordered by (occurred_at, id)."""

    occurred_at: datetime
    id: int

    def encode(self) -> str:
        """`<microseconds since the epoch>.<id>`: any string of that shape is a position."""
        micros = (self.occurred_at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}.{self.id}"

    @classmethod
    def decode(cls, cursor: str) -> Position:
        if not _CURSOR.fullmatch(cursor):
            raise InvalidQuery("Invalid cursor")
        micros, row_id = cursor.split(".")
        try:
            moment = _EPOCH + timedelta(microseconds=int(micros))
        except OverflowError:  # before year 1: a position before every entry
            moment = datetime.min.replace(tzinfo=UTC)
        return cls(occurred_at=moment, id=int(row_id))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: the published rule of the `cursor` query parameter (orderflow's OpenAPI says it too)
CURSOR_PATTERN = r"^-?[0-9]{1,17}\.[0-9]{1,18}$"
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass(frozen=True)
class AuditQuery:
    org_id: str
    entity_id: str | None = None
    action: str | None = None
    actor_user_id: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None
    limit: int = DEFAULT_LIMIT
    after: Position | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}")
        for name in ("occurred_from", "occurred_to"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise InvalidQuery(f"{_PUBLIC_NAMES[name]} must include a timezone")
        # `from` after `to` is a valid, empty range: an empty page, like any range
        # without entries (no rule the published spec could not state)


_PUBLIC_NAMES = {"occurred_from": "from", "occurred_to": "to"}
