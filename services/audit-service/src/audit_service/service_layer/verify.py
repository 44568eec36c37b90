"""Walking the chains to find tampering.

An org's chain is held to its signed checkpoints: it starts at the genesis or at a
signed retention anchor (entries before it were archived and pruned), and it must
still reach its newest signed head, with that entry unchanged. The heads come from the
service's own table and, when given (`make audit-verify`), from topic
`audit.checkpoint`, which a database-side attacker cannot rewrite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from audit_service.domain.checkpoint import Checkpoint, newest
from audit_service.domain.verification import BrokenLink, ChainReport, ChainWalker
from audit_service.service_layer.ports import UnitOfWork


class SignatureCheck(Protocol):
    def valid(self, checkpoint: Checkpoint) -> bool: ...


def _unsigned(org_id: str, checkpoint: Checkpoint, trusted: bool) -> ChainReport:
    why = "has no valid signature of a trusted key" if trusted else "cannot be checked"
    hint = "" if trusted else " (no AUDIT_SIGNING_KEY or AUDIT_TRUSTED_KEYS configured)"
    return ChainReport(
        ok=False,
        entries_checked=0,
        first_broken=BrokenLink(
            org_id=org_id,
            id=checkpoint.entry_id,
            event_id="",
            reason=f"the {checkpoint.kind} checkpoint at seq {checkpoint.seq} {why}{hint}",
            expected="a valid Ed25519 signature",
            found=checkpoint.key_id,
        ),
    )


async def verify_org(
    uow_factory: Callable[[], UnitOfWork],
    org_id: str,
    signatures: SignatureCheck | None = None,
    external: Sequence[Checkpoint] = (),
) -> ChainReport:
    async with uow_factory() as uow:
        anchors = await uow.retention.anchors(org_id)
        stored = await uow.retention.newest_head(org_id)
        candidates = [c for c in external if c.org_id == org_id and c.kind == "head"]
        if stored is not None:
            candidates.append(stored)
        heads = [h for h in [newest(candidates)] if h is not None]
        for checkpoint in [*anchors, *heads]:
            if signatures is None or not signatures.valid(checkpoint):
                return _unsigned(org_id, checkpoint, signatures is not None)
        walker = ChainWalker(org_id, anchors=anchors, heads=heads)
        async for rows in uow.audit_log.chain(org_id):
            if not walker.feed(rows):
                break
    return walker.report()


async def verify_all(
    uow_factory: Callable[[], UnitOfWork],
    org_ids: list[str] | None = None,
    signatures: SignatureCheck | None = None,
    external: Sequence[Checkpoint] = (),
) -> dict[str, ChainReport]:
    """Every org's report (or the given orgs'), in org order; orgs known only from
    their checkpoints are included (a log deleted whole)."""
    if org_ids is None:
        async with uow_factory() as uow:
            found = set(await uow.retention.org_ids())
        org_ids = sorted(found | {c.org_id for c in external})
    return {
        org: await verify_org(uow_factory, org, signatures, external) for org in sorted(org_ids)
    }
