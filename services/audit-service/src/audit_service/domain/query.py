"""Reading the log: filters, page size and the opaque keyset cursor."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

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
        raw = json.dumps({"t": self.occurred_at.isoformat(), "i": self.id}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            body = json.loads(base64.urlsafe_b64decode(padded.encode()))
            moment = datetime.fromisoformat(body["t"])
            row_id = body["i"]
        except (binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise InvalidQuery("Invalid cursor") from exc
        if moment.tzinfo is None or not isinstance(row_id, int) or isinstance(row_id, bool):
            raise InvalidQuery("Invalid cursor")
        return cls(occurred_at=moment, id=row_id)


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
        if (
            self.occurred_from is not None
            and self.occurred_to is not None
            and self.occurred_from > self.occurred_to
        ):
            raise InvalidQuery("from must not be after to")


_PUBLIC_NAMES = {"occurred_from": "from", "occurred_to": "to"}
