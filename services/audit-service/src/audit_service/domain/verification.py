"""Walking a chain: the first broken link, if any."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from audit_service.domain.checkpoint import Checkpoint
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
    #: chain position of the newest entry checked (0: none), of the retention anchor the
    #: walk started from (0: the genesis), and of the newest signed head it was held to
    last_seq: int = 0
    anchor_seq: int = 0
    checkpoint_seq: int | None = None


class ChainWalker:
    """Feeds one org's rows in chain order (ascending id); remembers the first break.

    `anchors` are signed retention anchors: when the oldest row left links to one, the
    walk starts there (its position; the pruned rows before it are gone by design).
    `heads` are signed head checkpoints (signatures checked by the caller): the entry
    at each one's position must be the one it names, and the log must reach the
    furthest one (else entries were deleted from the end, or the chain rewritten).
    """

    def __init__(
        self,
        org_id: str,
        anchors: Sequence[Checkpoint] = (),
        heads: Sequence[Checkpoint] = (),
    ) -> None:
        self.org_id = org_id
        self.checked = 0
        self.first_broken: BrokenLink | None = None
        self._prev = GENESIS_HASH
        self._anchors = {a.hash: a for a in anchors if a.kind == "anchor"}
        self._heads: dict[int, list[Checkpoint]] = {}
        for head in heads:
            self._heads.setdefault(head.seq, []).append(head)
        self.anchor_seq = 0
        self.seq = 0
        self._started = False

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
        if not self._started:
            self._started = True
            anchor = self._anchors.get(row.prev_hash)
            if row.prev_hash != GENESIS_HASH and anchor is not None and anchor.entry_id < row.id:
                self._prev = anchor.hash
                self.anchor_seq = self.seq = anchor.seq
        self.seq += 1
        broken = self._check_link(row)
        if broken is not None:
            return broken
        for head in self._heads.get(self.seq, []):
            if head.hash != row.hash or head.entry_id != row.id:
                reason = (
                    f"entry at seq {self.seq} is not the one the signed checkpoint names "
                    "(the chain was rewritten)"
                )
                return self._broken(row, reason, head.hash, row.hash)
        return None

    def _check_link(self, row: StoredEntry) -> BrokenLink | None:
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
        broken = self.first_broken
        furthest = max(self._heads, default=None)
        if broken is None and furthest is not None and furthest > self.seq:
            head = self._heads[furthest][0]
            broken = BrokenLink(
                org_id=self.org_id,
                id=head.entry_id,
                event_id="",
                reason=(
                    f"the log ends at seq {self.seq}, before the signed checkpoint at seq "
                    f"{head.seq} (entries were deleted from the end)"
                ),
                expected=head.hash,
                found=self._prev,
            )
        return ChainReport(
            ok=broken is None,
            entries_checked=self.checked,
            first_broken=broken,
            last_seq=self.seq,
            anchor_seq=self.anchor_seq,
            checkpoint_seq=furthest,
        )


def verify_rows(org_id: str, rows: Iterable[StoredEntry]) -> ChainReport:
    walker = ChainWalker(org_id)
    walker.feed(rows)
    return walker.report()
