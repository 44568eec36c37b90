"""Delivery worker loop: claims due exports and delivers many at once.

Woken at once when this process records new exports (in-process event), and polls
every `poll_interval` for retries that fall due and for work recorded by other
replicas. Claims only as many exports as it has free slots, so a claimed export is
never waiting idle under its lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from datetime import timedelta

from export_service.domain.export import ExportStatus
from export_service.domain.retry import RetryPolicy
from export_service.entrypoints.metrics import export_metrics
from export_service.service_layer.exports import Job, claim_due_exports, deliver
from export_service.service_layer.ports import ArtifactStore, Clock, Transports, UnitOfWorkFactory

log = logging.getLogger(__name__)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DeliveryWorker:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        transports: Transports,
        store: ArtifactStore,
        policy: RetryPolicy,
        clock: Clock,
        lease: timedelta,
        concurrency: int,
        poll_interval: float,
        owner: str | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._transports = transports
        self._store = store
        self._policy = policy
        self._clock = clock
        self._lease = lease
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self.owner = owner or worker_identity()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._healthy = True

    def wake(self) -> None:
        self._wake.set()

    async def ready(self) -> bool:
        return self._healthy

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        try:
            while not stop.is_set():
                self._wake.clear()
                free = self._concurrency - len(self._tasks)
                claimed = 0
                if free > 0:
                    try:
                        jobs = await claim_due_exports(
                            self._uow_factory(),
                            owner=self.owner,
                            lease=self._lease,
                            limit=free,
                            clock=self._clock,
                        )
                    except Exception:
                        failures += 1
                        self._healthy = False
                        log.exception("claiming due exports failed (%d in a row)", failures)
                        await _sleep_or_stop(stop, min(30.0, 0.5 * 2 ** min(failures, 6)))
                        continue
                    failures, self._healthy = 0, True
                    claimed = len(jobs)
                    for job in jobs:
                        self._start(job)
                if claimed and claimed == free:
                    await self._wait(stop, None)  # busy: wait for a free slot
                elif not claimed:
                    await self._wait(stop, self._poll_interval)
        finally:
            await self._drain()

    def _start(self, job: Job) -> None:
        task = asyncio.create_task(self._deliver(job), name=f"deliver-{job.export.id}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _deliver(self, job: Job) -> None:
        metrics = export_metrics()
        metrics.in_flight.inc()
        begin = time.perf_counter()
        try:
            outcome = await deliver(
                job,
                owner=self.owner,
                uow=self._uow_factory(),
                transports=self._transports,
                store=self._store,
                policy=self._policy,
                clock=self._clock,
            )
        except Exception:
            # Recording the outcome failed (database down): the lease expires and the
            # export is claimed again; the remote check makes the redelivery harmless.
            log.exception("recording the outcome of export %s failed", job.export.id)
            metrics.outcomes.labels("error").inc()
            return
        finally:
            metrics.in_flight.dec()
            metrics.attempt_seconds.observe(time.perf_counter() - begin)
        metrics.outcomes.labels(outcome.status.value if outcome.status else "lost_lease").inc()
        if outcome.error_code:
            metrics.failures.labels(outcome.error_code).inc()
            log.warning(
                "export %s attempt failed: %s (%s)",
                outcome.export_id,
                outcome.error_code,
                outcome.status,
            )
        if outcome.status is ExportStatus.SENT:
            latency = (self._clock() - job.export.created_at).total_seconds()
            metrics.end_to_end_seconds.observe(max(latency, 0.0))

    async def _wait(self, stop: asyncio.Event, at_most: float | None) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _drain(self, grace: float = 10.0) -> None:
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
