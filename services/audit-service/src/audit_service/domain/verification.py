"""Walking a chain: the first broken link, if any."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from audit_service.domain.entry import GENESIS_HASH, AuditEntry, link_hash


@dataclass(frozen=True)
class StoredEntry:
    """A row of the log as read back: the entry, its row id and the stored links."""

    id: int
    entry: AuditEntry
    prev_hash: str
    hash: str
    recorded_at: datetime | None = None


@dataclass(frozen=True)
class BrokenLink:
    org_id: str
    id: int
    event_id: str
    reason: str
    expected: str
    found: str


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries_checked: int
    first_broken: BrokenLink | None


class ChainWalker:
    """Feeds one org's rows in chain order (ascending id); remembers the first break."""

    def __init__(self, org_id: str) -> None:
        self.org_id = org_id
        self.checked = 0
        self.first_broken: BrokenLink | None = None
        self._prev = GENESIS_HASH

    def feed(self, rows: Iterable[StoredEntry]) -> bool:
        """False once a break is found (the walk can stop)."""
        for row in rows:
            if self.first_broken is not None:
                return False
            self.checked += 1
            self.first_broken = self._check(row)
            self._prev = row.hash
        return self.first_broken is None

    def _check(self, row: StoredEntry) -> BrokenLink | None:
        if row.prev_hash != self._prev:
            reason = "prev_hash does not match the hash of the previous entry"
            return self._broken(row, reason, self._prev, row.prev_hash)
        recomputed = link_hash(row.prev_hash, row.entry)
        if recomputed != row.hash:
            reason = "hash does not match the entry's content"
            return self._broken(row, reason, recomputed, row.hash)
        return None

    def _broken(self, row: StoredEntry, reason: str, expected: str, found: str) -> BrokenLink:
        return BrokenLink(
            org_id=self.org_id,
            id=row.id,
            event_id=str(row.entry.event_id),
            reason=reason,
            expected=expected,
            found=found,
        )

    def report(self) -> ChainReport:
        return ChainReport(
            ok=self.first_broken is None,
            entries_checked=self.checked,
            first_broken=self.first_broken,
        )


def verify_rows(org_id: str, rows: Iterable[StoredEntry]) -> ChainReport:
    walker = ChainWalker(org_id)
    walker.feed(rows)
    return walker.report()
