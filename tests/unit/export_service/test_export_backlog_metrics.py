"""What the export metrics read: the backlog per status, and exports that expire."""

from __future__ import annotations

from datetime import timedelta

from export_service.domain.export import Export, ExportStatus
from export_service.entrypoints.worker import _count_expired
from export_service.service_layer.exports import (
    claim_exports,
    export_backlog,
    record_push_requests,
)
from prometheus_client import REGISTRY

from .test_export_use_cases import LEASE, local_connection, push


async def test_the_backlog_counts_waiting_and_delivering_exports_with_the_oldest(
    uow, clock, make_push
):
    assert await export_backlog(uow) == {}
    await local_connection(uow, clock)
    first = clock()
    await record_push_requests(uow, [push(make_push)], clock)
    clock.advance(10)
    await record_push_requests(uow, [push(make_push)], clock)
    assert await export_backlog(uow) == {"PENDING": (2, first)}
    (job,) = (await claim_exports(uow, owner="w1", lease=LEASE, limit=1, clock=clock)).jobs
    backlog = await export_backlog(uow)
    assert backlog["PENDING"][0] == 1 and backlog["DELIVERING"][0] == 1
    assert job.export.status is ExportStatus.DELIVERING


async def test_an_export_past_its_deadline_is_reported_once_after_the_commit(uow, clock, make_push):
    await local_connection(uow, clock)
    await record_push_requests(uow, [push(make_push)], clock)
    clock.advance(timedelta(days=1, seconds=1).total_seconds())
    expired: list[Export] = []
    claimed = await claim_exports(
        uow, owner="w1", lease=LEASE, limit=5, clock=clock, on_expired=expired.append
    )
    assert claimed.jobs == [] and len(expired) == 1
    (export,) = expired
    assert export.status is ExportStatus.FAILED
    assert uow.committed_exports[export.id].status is ExportStatus.FAILED
    assert await export_backlog(uow) == {}
    await claim_exports(
        uow, owner="w1", lease=LEASE, limit=5, clock=clock, on_expired=expired.append
    )
    assert len(expired) == 1

    labels = {"status": "FAILED", "code": "deadline_passed"}
    name = "orderflow_export_exports_finished_total"
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    _count_expired(export)
    assert REGISTRY.get_sample_value(name, labels) == before + 1
