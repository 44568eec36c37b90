"""The push request's trace context rides on the export (so any worker, later, continues
it), each outcome event is written under its own attempt's trace, and the worker logs
outcomes the way the seed's quickstart shows its worker."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from export_service.domain.export import Export, ExportStatus
from export_service.entrypoints.worker import log_outcome
from export_service.service_layer.exports import (
    Job,
    Outcome,
    PushRequest,
    record_outcomes,
    record_push_requests,
)
from orderflow_shared import tracing

from tests.unit.export_service.test_export_circuit import (
    DOWN,
    POLICY,
    RETRY,
    _sent,
    add_connection,
    claim,
)


def carrier(n: int) -> dict[str, str]:
    return {"traceparent": f"00-{n:032x}-{n:016x}-01"}


async def test_the_export_keeps_the_push_request_s_trace_and_each_outcome_its_attempt_s(
    uow: Any, clock: Any, make_push: Any
) -> None:
    await add_connection(uow, "org-a")
    requests = [
        PushRequest(uuid.uuid4(), "org-a", make_push(org_id="org-a"), carrier(n)) for n in (1, 2)
    ]
    await record_push_requests(uow, requests, clock, deadline=RETRY.deadline)
    clock.advance(0.001)
    jobs = sorted(await claim(uow, clock), key=lambda j: j.export.trace_context["traceparent"])
    assert [j.export.trace_context for j in jobs] == [carrier(1), carrier(2)]

    written: list[tuple[str, dict[str, str]]] = []
    original = uow._write_events

    async def spy(events: list[Any]) -> None:
        written.extend((type(e).__name__, tracing.current_carrier()) for e in events)
        await original(events)

    uow._write_events = spy
    sent, failed = jobs
    await record_outcomes(
        uow,
        [(replace(sent, trace_context=carrier(11)), _sent(sent)), (failed, DOWN)],
        owner="w1",
        policy=RETRY,
        clock=clock,
        circuit_policy=POLICY,
    )
    by_type = dict(written)
    # the sent export's event continues the attempt's span; the other, with no span of
    # its own given, continues the push request's
    assert by_type["ExportSent"]["traceparent"] == carrier(11)["traceparent"]
    assert by_type["ExportDelayed"]["traceparent"] == carrier(2)["traceparent"]


def test_outcomes_are_logged_at_info_like_the_seed_s_worker(
    uow: Any, caplog: Any, make_snapshot: Any
) -> None:
    export = Export(
        id=uuid.uuid4(),
        draft_order_id=uuid.uuid4(),
        org_id="org-a",
        attempt_no=1,
        snapshot=make_snapshot(),
        created_at=datetime.now(UTC),
        attempts=2,
    )
    job = Job(export, None)
    caplog.set_level(logging.INFO, logger="export_service.entrypoints.worker")
    log_outcome(job, Outcome(export.id, ExportStatus.SENT))
    log_outcome(job, Outcome(export.id, ExportStatus.FAILED, "auth_failed"))
    log_outcome(job, Outcome(export.id, ExportStatus.PENDING, "connection_refused"))
    records = [r for r in caplog.records if r.name == "export_service.entrypoints.worker"]
    assert [r.levelno for r in records] == [logging.INFO] * 3
    assert [r.getMessage() for r in records] == [
        f"Export completed: {export.id}",
        f"Export failed: {export.id} (auth_failed)",
        f"Export attempt failed: {export.id} (connection_refused, attempt 2; will retry)",
    ]
    assert {getattr(r, "export_id", None) for r in records} == {str(export.id)}
