import asyncio
import uuid
from datetime import timedelta
from types import SimpleNamespace

from export_service.domain.connection import ConnectorType, LocalSettings, Secrets
from export_service.domain.export import Export, ExportStatus
from export_service.domain.renderers import FileFormat
from export_service.domain.retry import RetryPolicy
from export_service.entrypoints.consumer import make_push_handler
from export_service.entrypoints.worker import DeliveryWorker
from export_service.service_layer import connections as uc
from orderflow_shared.messaging.envelope import Envelope


class GatedTransport:
    """Counts uploads running at once; each waits for the gate to open."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.running = 0
        self.most = 0
        self.delivered: list[str] = []

    async def deliver(self, connection, upload):
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        self.delivered.append(upload.file_name)
        return f"/inbox/{upload.file_name}"

    async def check(self, connection):
        raise NotImplementedError


async def until(condition, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + 5
    while True:
        if condition():
            return
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


async def test_the_consumer_wakes_the_worker_which_bounds_deliveries_in_flight(
    uow, clock, store, make_push
):
    command = uc.CreateConnection(
        name="local",
        connector_type=ConnectorType.LOCAL,
        is_active=True,
        file_format=FileFormat.CSV,
        file_name_template="{export_id}",
        sftp=None,
        local=LocalSettings("/tmp/x"),
        secrets=Secrets(),
    )
    anywhere = SimpleNamespace(refusal=lambda org_id, directory: None)  # fake transport
    await uc.create_connection(uow, uc.Actor("org-a", "u"), command, clock, local_policy=anywhere)
    transport = GatedTransport()
    worker = DeliveryWorker(
        uow_factory=lambda: uow,
        transports={ConnectorType.LOCAL: transport},
        store=store,
        policy=RetryPolicy(),
        clock=clock,
        lease=timedelta(seconds=30),
        concurrency=4,
        poll_interval=3600,  # only the wake-up can start work in this test
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    handler = make_push_handler(lambda: uow, clock, worker.wake)
    envelopes = [
        Envelope.wrap(
            make_push(),
            source="draft-api",
            subject="d",
            org_id="org-a",
            actor_id="u",
            event_id=uuid.uuid4(),
        )
        for _ in range(10)
    ]
    await handler(envelopes)
    await until(lambda: transport.running == 4, "four deliveries in flight")
    transport.gate.set()
    await until(lambda: len(transport.delivered) == 10, "all ten delivered")
    stop.set()
    await running
    assert transport.most == 4
    statuses = {e.status for e in uow.committed_exports.values()}
    assert statuses == {ExportStatus.SENT}
    assert uow.event_types().count("ExportSentV1") == 10


async def _next_due(uow, clock):
    """What a claim that took fewer than it could reads in its transaction."""
    async with uow:
        return await uow.exports.next_due(clock())


async def test_an_idle_worker_sleeps_until_work_falls_due_within_its_bounds(
    uow, clock, store, snapshot
):
    """After a claim that found nothing the worker sleeps until the next export falls
    due (no fixed-rate claims), never less than the poll interval, never more than the
    idle bound (a lost NOTIFY)."""
    worker = DeliveryWorker(
        uow_factory=lambda: uow,
        transports={},
        store=store,
        policy=RetryPolicy(),
        clock=clock,
        lease=timedelta(seconds=30),
        concurrency=4,
        poll_interval=0.5,
        idle_poll_interval=60,
    )
    assert worker._idle_wait(await _next_due(uow, clock)) == 60  # nothing waits at all
    export = Export(
        id=uuid.uuid4(),
        draft_order_id=uuid.uuid4(),
        org_id="org-a",
        attempt_no=1,
        snapshot=snapshot,
        created_at=clock(),
        next_attempt_at=clock() + timedelta(seconds=7),
        deliver_by=clock() + timedelta(hours=1),
    )
    uow.committed_exports[export.id] = export
    assert worker._idle_wait(await _next_due(uow, clock)) == 7  # a retry due in 7 s
    clock.advance(6.9)
    # due in 0.1 s: at least the poll interval
    assert worker._idle_wait(await _next_due(uow, clock)) == 0.5
    clock.advance(3600)
    assert worker._idle_wait(await _next_due(uow, clock)) == 0.5  # overdue: claimed again soon
