"""Retention: archive an org's entries past its policy, then prune them.

Each archive is one transaction under the org's lock: read the oldest rows, check
they are an intact chain from the last anchor, write the archive file and fsync it,
sign an anchor checkpoint at its last entry, record the archive (path, SHA-256), prune
exactly its rows, commit. Killed anywhere before the commit, nothing is deleted and
the next run writes the same file again; after it, the rows are gone and recorded as
archived, so nothing is pruned twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from audit_service.domain.checkpoint import ChainPosition, Checkpoint
from audit_service.domain.entry import GENESIS_HASH, link_hash
from audit_service.domain.retention import (
    LogRow,
    RetentionPolicy,
    archive_lines,
    archive_name,
    checked_days,
    next_archive,
    period_of,
    policy_for,
)
from audit_service.service_layer.checkpoints import CheckpointSigner
from audit_service.service_layer.ports import UnitOfWork

_log = logging.getLogger(__name__)

#: (point, detail): a test hook between the steps (`after_archive`, `before_commit`)
PauseHook = Callable[[str, str], Awaitable[None]]


class Written(Protocol):
    @property
    def relative(self) -> str: ...

    @property
    def sha256(self) -> str: ...

    @property
    def bytes(self) -> int: ...


class ArchiveWriter(Protocol):
    def write(self, relative: str, content: bytes) -> Written: ...


async def _no_pause(point: str, detail: str) -> None:
    return None


@dataclass
class OrgRetention:
    org_id: str
    policy: RetentionPolicy
    archives: int = 0
    archived: int = 0
    pruned: int = 0
    #: why the org was left alone (a chain that does not verify is evidence: kept)
    refused: str | None = None


def chain_problem(rows: Sequence[LogRow], start: Checkpoint | None) -> str | None:
    """Why `rows` (the org's oldest) are not an intact chain from `start`, if they aren't."""
    prev = start.hash if start is not None else GENESIS_HASH
    for row in rows:
        if row.prev_hash != prev:
            return f"entry {row.id} does not link to the one before it"
        if link_hash(row.prev_hash, row.entry) != row.hash:
            return f"entry {row.id} does not match its hash"
        prev = row.hash
    return None


async def policy_of(
    uow_factory: Callable[[], UnitOfWork], org_id: str, default_days: int
) -> RetentionPolicy:
    async with uow_factory() as uow:
        return policy_for(org_id, await uow.retention.policy(org_id), default_days)


async def set_policy(
    uow_factory: Callable[[], UnitOfWork], org_id: str, days: int, updated_by: str | None
) -> RetentionPolicy:
    """Raises InvalidPolicy for days outside 1..36500."""
    days = checked_days(days)
    async with uow_factory() as uow:
        await uow.retention.set_policy(org_id, days, updated_by)
        await uow.commit()
    return RetentionPolicy(org_id, days, "org")


async def retain_org(
    uow_factory: Callable[[], UnitOfWork],
    org_id: str,
    *,
    default_days: int,
    archive: ArchiveWriter,
    signer: CheckpointSigner,
    now: datetime,
    batch_size: int,
    pause: PauseHook = _no_pause,
) -> OrgRetention:
    policy = await policy_of(uow_factory, org_id, default_days)
    outcome = OrgRetention(org_id, policy)
    while True:
        async with uow_factory() as uow:
            await uow.audit_log.lock_orgs([org_id])  # one retention, no append in between
            policy = policy_for(org_id, await uow.retention.policy(org_id), default_days)
            outcome.policy = policy
            head = await uow.retention.head(org_id)
            if head is None:
                return outcome
            anchor = await uow.retention.newest_anchor(org_id)
            base = anchor.seq if anchor else 0
            rows = await uow.retention.oldest_rows(org_id, batch_size, base)
            run = next_archive(rows, policy.cutoff(now), head_id=head[0])
            if not run:
                return outcome
            problem = chain_problem(run, anchor)
            if problem is not None:
                outcome.refused = problem
                _log.error("audit retention left org %s alone: %s", org_id, problem)
                return outcome
            written = archive.write(archive_name(run), archive_lines(run))
            await pause("after_archive", written.relative)
            last = run[-1]
            anchor_checkpoint = signer.sign(
                ChainPosition(org_id, last.seq, last.id, last.hash), "anchor", now
            )
            await uow.retention.add_checkpoint(anchor_checkpoint)
            archive_id = await uow.retention.add_archive(
                {
                    "org_id": org_id,
                    "period": period_of(run[0].entry.occurred_at),
                    "first_id": run[0].id,
                    "last_id": last.id,
                    "first_seq": run[0].seq,
                    "last_seq": last.seq,
                    "entry_count": len(run),
                    "path": written.relative,
                    "sha256": written.sha256,
                    "bytes": written.bytes,
                }
            )
            pruned = await uow.retention.prune(archive_id)
            await pause("before_commit", written.relative)
            await uow.commit()
        outcome.archives += 1
        outcome.archived += len(run)
        outcome.pruned += pruned
        _log.info(
            "audit retention: org %s, %d entries (seq %d-%d) archived to %s and pruned",
            org_id,
            pruned,
            run[0].seq,
            last.seq,
            written.relative,
        )


async def retain_all(
    uow_factory: Callable[[], UnitOfWork],
    *,
    default_days: int,
    archive: ArchiveWriter,
    signer: CheckpointSigner,
    now: datetime,
    batch_size: int,
    org_ids: list[str] | None = None,
    pause: PauseHook = _no_pause,
) -> list[OrgRetention]:
    if org_ids is None:
        async with uow_factory() as uow:
            org_ids = await uow.audit_log.org_ids()
    return [
        await retain_org(
            uow_factory,
            org,
            default_days=default_days,
            archive=archive,
            signer=signer,
            now=now,
            batch_size=batch_size,
            pause=pause,
        )
        for org in org_ids
    ]
