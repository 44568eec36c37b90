"""Retention: which of an org's entries are past its policy, and how they are archived.

Entries leave the log oldest first, as a prefix of the org's chain (ascending id), so
the entries kept still form one chain from the newest pruned entry (its signed anchor).
An entry is past retention when it happened (`occurred_at`) more than the policy's
days ago; the prefix stops at the first entry that is not (an old event recorded after
a younger one waits for it), and never takes the org's newest entry (it carries the
chain on for the next append).

An archive file holds one run of the prefix within one calendar month (UTC) of
`occurred_at`: JSON Lines, one entry per line with every column of the row and its
chain position `seq`, keys sorted, times in UTC with microseconds.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Literal

from audit_service.domain.entry import AuditEntry, canonical_time, entry_of, entry_values

MIN_DAYS = 1
MAX_DAYS = 36500

PolicySource = Literal["default", "org"]


class InvalidPolicy(ValueError):
    """A retention in days outside 1..36500."""


@dataclass(frozen=True)
class RetentionPolicy:
    org_id: str
    days: int
    source: PolicySource

    def cutoff(self, now: datetime) -> datetime:
        """Entries that happened before this are past retention."""
        return now - timedelta(days=self.days)


def checked_days(days: int) -> int:
    if isinstance(days, bool) or not MIN_DAYS <= days <= MAX_DAYS:
        raise InvalidPolicy(f"retention_days must be between {MIN_DAYS} and {MAX_DAYS}")
    return days


def policy_for(org_id: str, override: int | None, default_days: int) -> RetentionPolicy:
    if override is not None:
        return RetentionPolicy(org_id, override, "org")
    return RetentionPolicy(org_id, default_days, "default")


#: the times of a row, in UTC with microseconds in its archive line
_TIMES = ("occurred_at", "created_at", "recorded_at")


@dataclass(frozen=True)
class LogRow:
    """A row of `audit_log` with every column, and its position in the org's chain."""

    id: int
    seq: int
    entry: AuditEntry
    created_at: datetime
    recorded_at: datetime
    prev_hash: str
    hash: str

    def record(self) -> dict[str, Any]:
        """The row's archive line: every column by name, and `seq`."""
        record = {
            **entry_values(self.entry),
            **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "entry"},
        }
        record.update({name: canonical_time(record[name]) for name in _TIMES})
        return {**record, "event_id": str(self.entry.event_id), "data": dict(self.entry.data)}

    @classmethod
    def of_record(cls, record: Mapping[str, Any]) -> LogRow:
        """A row back from its archive line (the inverse of `record`)."""
        values = {**record, **{name: datetime.fromisoformat(record[name]) for name in _TIMES}}
        values.update(id=int(record["id"]), event_id=uuid.UUID(record["event_id"]))
        return cls.of_columns(values, int(record["seq"]))

    @classmethod
    def of_columns(cls, values: Mapping[Any, Any], seq: int) -> LogRow:
        """The row in a mapping of its columns (read from the log, or an archive line)."""
        return cls(
            id=values["id"],
            seq=seq,
            entry=entry_of(values),
            created_at=values["created_at"],
            recorded_at=values["recorded_at"],
            prev_hash=values["prev_hash"],
            hash=values["hash"],
        )


def period_of(moment: datetime) -> str:
    """The calendar month (UTC) an entry is archived under, `YYYY-MM`."""
    return canonical_time(moment)[:7]


def next_archive(rows: Sequence[LogRow], cutoff: datetime, head_id: int) -> list[LogRow]:
    """The rows of the next archive: from the org's oldest rows (ascending id), the
    leading run past `cutoff`, in one period, without the org's newest row."""
    run: list[LogRow] = []
    for row in rows:
        if row.id >= head_id or not row.entry.occurred_at < cutoff:
            break
        if run and period_of(row.entry.occurred_at) != period_of(run[0].entry.occurred_at):
            break
        run.append(row)
    return run


def archive_lines(rows: Sequence[LogRow]) -> bytes:
    return b"".join(
        json.dumps(r.record(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        + b"\n"
        for r in rows
    )


def read_archive(content: bytes) -> list[LogRow]:
    return [LogRow.of_record(json.loads(line)) for line in content.splitlines() if line]


def org_directory(org_id: str) -> str:
    """A file-system-safe, collision-free directory name for an org id."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", org_id)[:40] or "_"
    return f"{safe}-{hashlib.sha256(org_id.encode()).hexdigest()[:12]}"


def archive_name(rows: Sequence[LogRow]) -> str:
    """`<org dir>/<YYYY-MM>/<first seq>-<last seq>.jsonl`, relative to the archive dir."""
    first, last = rows[0], rows[-1]
    return (
        f"{org_directory(first.entry.org_id)}/{period_of(first.entry.occurred_at)}/"
        f"{first.seq:012d}-{last.seq:012d}.jsonl"
    )
