"""Walking the chains to find tampering."""

from __future__ import annotations

from collections.abc import Callable

from audit_service.domain.verification import ChainReport, ChainWalker
from audit_service.service_layer.ports import UnitOfWork


async def verify_org(uow_factory: Callable[[], UnitOfWork], org_id: str) -> ChainReport:
    walker = ChainWalker(org_id)
    async with uow_factory() as uow:
        async for rows in uow.audit_log.chain(org_id):
            if not walker.feed(rows):
                break
    return walker.report()


async def verify_all(
    uow_factory: Callable[[], UnitOfWork], org_ids: list[str] | None = None
) -> dict[str, ChainReport]:
    """Every org's report (or the given orgs'), in org order."""
    if org_ids is None:
        async with uow_factory() as uow:
            org_ids = await uow.audit_log.org_ids()
    return {org: await verify_org(uow_factory, org) for org in sorted(org_ids)}
