"""Sealing each org's chain head with a signed checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from audit_service.domain.checkpoint import ChainPosition, Checkpoint, Kind
from audit_service.service_layer.ports import UnitOfWork

_log = logging.getLogger(__name__)


class CheckpointSigner(Protocol):
    key_id: str

    def sign(self, position: ChainPosition, kind: Kind, signed_at: datetime) -> Checkpoint: ...


@dataclass
class SealResult:
    signed: list[Checkpoint] = field(default_factory=list)
    #: orgs whose log no longer holds their last signed head (nothing is signed over it)
    refused: dict[str, str] = field(default_factory=dict)


async def seal_org(
    uow_factory: Callable[[], UnitOfWork], signer: CheckpointSigner, org_id: str, now: datetime
) -> Checkpoint | str | None:
    """Sign the org's head if it moved since its last checkpoint. Returns the new
    checkpoint, None when there was nothing new, or why it refused: a log that lost
    its last signed head is never signed over (the old checkpoint stays the evidence)."""
    async with uow_factory() as uow:
        await uow.audit_log.lock_orgs([org_id])  # no append or prune in between
        head = await uow.retention.head(org_id)
        if head is None:
            last = await uow.retention.newest_head(org_id)
            return None if last is None else f"the log is empty; it reached seq {last.seq}"
        head_id, head_hash = head
        anchor = await uow.retention.newest_anchor(org_id)
        base = anchor.seq if anchor else 0
        last = await uow.retention.newest_head(org_id)
        if last is not None and last.seq > base:
            # count on from the last signed head (not from the anchor: a big log would
            # be counted whole every round), which must still be there, unchanged
            if await uow.retention.entry_hash(org_id, last.entry_id) != last.hash:
                return (
                    f"the entry of the checkpoint at seq {last.seq} (id {last.entry_id}) "
                    "is gone or changed"
                )
            seq = last.seq + await uow.retention.count_after(org_id, last.entry_id)
        else:  # no head yet, or retention pruned past it
            seq = base + await uow.retention.count_after(org_id, anchor.entry_id if anchor else 0)
        if last is not None:
            if last.seq == seq and last.hash == head_hash and last.entry_id == head_id:
                return None
            if seq < last.seq:
                return f"the log ends at seq {seq}, before its checkpoint at seq {last.seq}"
        checkpoint = signer.sign(ChainPosition(org_id, seq, head_id, head_hash), "head", now)
        await uow.retention.add_checkpoint(checkpoint)
        await uow.commit()
    return checkpoint


async def seal_heads(
    uow_factory: Callable[[], UnitOfWork],
    signer: CheckpointSigner,
    now: datetime,
    org_ids: list[str] | None = None,
) -> SealResult:
    if org_ids is None:
        # every org each round, but one statement first sets aside those whose head has
        # not moved (the checks seal_org would make for them are in that statement)
        async with uow_factory() as uow:
            sealed = await uow.retention.sealed_orgs()
            org_ids = [org for org in await uow.retention.org_ids() if org not in sealed]
    result = SealResult()
    for org in org_ids:
        outcome = await seal_org(uow_factory, signer, org, now)
        if isinstance(outcome, str):
            _log.error("audit checkpoint refused for org %s: %s", org, outcome)
            result.refused[org] = outcome
        elif outcome is not None:
            result.signed.append(outcome)
    return result
