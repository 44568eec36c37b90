"""Delivery worker: claims due exports, delivers many at once, records outcomes in batches.

- Woken at once when this process records new exports (in-process event) and by the
  `consume` role's NOTIFY. When a claim finds nothing, the worker asks when work falls
  due next (a retry, a lease or a probe) and sleeps until then, at least `poll_interval`
  and at most `idle_poll_interval` (the bound on a lost wake-up), instead of claiming
  every `poll_interval`.
- A claimed export holds one of `concurrency` slots until its outcome is recorded, and
  the worker claims only when half the slots are free (or it is idle): claims come in
  batches and no claimed export waits long under its lease.
- Claims skip connections whose circuit is open (their exports wait without spending
  attempts; one probe goes through per probe interval) and keep at most
  `per_connection` deliveries in flight per connection, so one org's dead or slow
  dropzone neither takes the slots of the others nor gets a burst when it comes back.
- Outcomes are recorded by one recorder task, all that are ready in one transaction.
  Each outcome writes an outbox event whose NOTIFY serialises commits in Postgres, so
  one commit per batch instead of one per export is what lets deliveries scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

from orderflow_shared import tracing
from orderflow_shared.timing import backoff, sleep_or_stop

from export_service.domain.circuit import CircuitPolicy, CircuitState
from export_service.domain.errors import DeliveryError
from export_service.domain.export import Export, ExportStatus
from export_service.domain.retry import RetryPolicy
from export_service.entrypoints.metrics import export_metrics
from export_service.service_layer.exports import (
    Job,
    Outcome,
    Result,
    attempt,
    circuit_counts,
    claim_exports,
    export_backlog,
    record_outcomes,
)
from export_service.service_layer.ports import ArtifactStore, Clock, Transports, UnitOfWorkFactory

log = logging.getLogger(__name__)
MAX_RECORD_BATCH = 200
#: how often each process reads the circuits' states and the backlog into its metrics
CIRCUIT_METRICS_INTERVAL = 5.0
#: statuses of exports not yet final (the backlog gauges report each, 0 when empty)
BACKLOG_STATUSES = (ExportStatus.PENDING, ExportStatus.DELIVERING)


def _count_expired(export: Export) -> None:
    """An export failed because its deadline passed while it waited (no attempt ran)."""
    code = export.error_json.get("code") if export.error_json else None
    export_metrics().finished.labels(export.status.value, str(code or "")).inc()


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
        circuit_policy: CircuitPolicy | None = None,
        per_connection: int = 1_000_000,
        idle_poll_interval: float = 2.0,
    ) -> None:
        self._uow_factory = uow_factory
        self._transports = transports
        self._store = store
        self._policy = policy
        self._circuit_policy = circuit_policy or CircuitPolicy()
        self._per_connection = per_connection
        self._clock = clock
        self._lease = lease
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._idle_poll_interval = max(poll_interval, idle_poll_interval)
        self.owner = owner or worker_identity()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._results: asyncio.Queue[tuple[Job, Result, float]] = asyncio.Queue()
        self._busy = 0  # claimed and not yet recorded
        #: the claim loop waits for slots (all taken, too few free, or due work it could
        #: not take, e.g. at a connection's bound): every recorded outcome wakes it;
        #: otherwise only outcomes that may change what is due (not SENT) do
        self._starved = False
        self._healthy = True
        self._claim_threshold = max(1, concurrency // 2)

    def wake(self) -> None:
        self._wake.set()

    async def ready(self) -> bool:
        return self._healthy

    async def run(self, stop: asyncio.Event) -> None:
        recorder = asyncio.create_task(self._record_forever(), name="export-recorder")
        gauges = asyncio.create_task(self._circuit_metrics(stop), name="circuit-metrics")
        try:
            await self._claim_forever(stop)
        finally:
            await self._drain()
            for task in (recorder, gauges):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _circuit_metrics(self, stop: asyncio.Event) -> None:
        metrics = export_metrics()
        while not stop.is_set():
            try:
                counts = await circuit_counts(self._uow_factory())
            except Exception:  # the database is down: the claim loop reports it
                counts = None
            if counts is not None:
                for state in CircuitState:
                    metrics.circuits.labels(state.value).set(counts.get(state.value, 0))
            await self._backlog_metrics()
            await sleep_or_stop(stop, CIRCUIT_METRICS_INTERVAL)

    async def _backlog_metrics(self) -> None:
        metrics = export_metrics()
        try:
            backlog = await export_backlog(self._uow_factory())
        except Exception:  # the database is down: the claim loop reports it
            return
        now = self._clock()
        for status in BACKLOG_STATUSES:
            count, oldest = backlog.get(status.value, (0, None))
            metrics.backlog.labels(status.value).set(count)
            age = (now - oldest).total_seconds() if oldest is not None else 0.0
            metrics.backlog_age_seconds.labels(status.value).set(max(age, 0.0))

    async def _claim_forever(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            self._wake.clear()
            free = self._concurrency - self._busy
            claimed = 0
            tried = free >= self._claim_threshold or (free > 0 and self._busy == 0)
            if tried:
                try:
                    claim = await claim_exports(
                        self._uow_factory(),
                        owner=self.owner,
                        lease=self._lease,
                        limit=free,
                        clock=self._clock,
                        per_connection=self._per_connection,
                        on_expired=_count_expired,
                    )
                except Exception:
                    failures += 1
                    self._healthy = False
                    log.exception("claiming due exports failed (%d in a row)", failures)
                    await sleep_or_stop(stop, backoff(failures, base=1.0, cap=30.0, jitter=False))
                    continue
                failures, self._healthy = 0, True
                if claim.contended:
                    # another worker is claiming what is due (a NOTIFY wakes every
                    # worker); if it fills its slots it announces that more may be due,
                    # which wakes this one, as do our own outcomes and new exports
                    self._starved = True
                    await self._wait(stop, self._idle_poll_interval)
                    continue
                claimed = len(claim.jobs)
                for job in claim.jobs:
                    self._start(job)
            if claimed and claimed == free:
                self._starved = True
                await self._wait(stop, None)  # busy: wait until outcomes free slots
            elif tried:
                # the claim took every due export it could: nothing to claim again
                # before something falls due, or is recorded, or frees a slot
                await self._wait(stop, self._idle_wait(claim.next_due))
            else:
                self._starved = True
                await self._wait(stop, self._poll_interval if free else None)

    def _idle_wait(self, due: datetime | None) -> float:
        """How long a worker sleeps (unless woken) after a claim that took all it could,
        given when work falls due next (read by the claim)."""
        if due is None:
            self._starved = False
            return self._idle_poll_interval
        wait = (due - self._clock()).total_seconds()
        self._starved = wait <= 0  # due now but not claimable (bound, rows held)
        return min(max(wait, self._poll_interval), self._idle_poll_interval)

    def _start(self, job: Job) -> None:
        self._busy += 1
        export_metrics().in_flight.inc()
        task = asyncio.create_task(self._attempt(job), name=f"deliver-{job.export.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, job: Job) -> None:
        begin = time.perf_counter()
        export = job.export
        # continues the push request's trace (kept on the export row), even in a later
        # process or after a restart
        with tracing.span(
            "deliver export",
            parent=export.trace_context or None,
            attributes={
                "orderflow.export_id": str(export.id),
                "orderflow.draft_id": str(export.draft_order_id),
                "orderflow.org_id": export.org_id,
                "orderflow.attempt": export.attempts,
                "orderflow.worker": self.owner,
            },
        ) as span:
            result = await attempt(job, self._transports, self._store)
            if isinstance(result, DeliveryError):
                tracing.fail_span(span, str(result.code))
            job = replace(job, trace_context=tracing.carrier_for_span(span))
        await self._results.put((job, result, begin))

    async def _record_forever(self) -> None:
        while True:
            batch = [await self._results.get()]
            while not self._results.empty() and len(batch) < MAX_RECORD_BATCH:
                batch.append(self._results.get_nowait())
            await self._record(batch)

    async def _record(self, batch: list[tuple[Job, Result, float]]) -> None:
        metrics = export_metrics()
        try:
            outcomes = await record_outcomes(
                self._uow_factory(),
                [(job, result) for job, result, _ in batch],
                owner=self.owner,
                policy=self._policy,
                clock=self._clock,
                circuit_policy=self._circuit_policy,
            )
        except Exception:
            # The database is unreachable: the leases expire and the exports are claimed
            # again; the remote check makes the redelivery harmless.
            log.exception("recording %d delivery outcome(s) failed", len(batch))
            metrics.outcomes.labels("error").inc(len(batch))
            outcomes = []
        finally:
            self._busy -= len(batch)
            metrics.in_flight.dec(len(batch))
        if (
            self._starved
            or len(outcomes) < len(batch)
            or any(o.status is not ExportStatus.SENT for o in outcomes)
        ):
            self._wake.set()
        done = time.perf_counter()
        for (job, _result, begin), outcome in zip(batch, outcomes, strict=False):
            metrics.attempt_seconds.observe(done - begin)
            self._observe(job, outcome)

    def _observe(self, job: Job, outcome: Outcome) -> None:
        metrics = export_metrics()
        metrics.outcomes.labels(outcome.status.value if outcome.status else "lost_lease").inc()
        if outcome.status in (ExportStatus.SENT, ExportStatus.FAILED):
            metrics.finished.labels(outcome.status.value, outcome.error_code or "").inc()
        if outcome.error_code:
            metrics.failures.labels(outcome.error_code).inc()
        with tracing.attached(job.trace_context or job.export.trace_context):
            log_outcome(job, outcome)
        if outcome.status is ExportStatus.SENT:
            latency = (self._clock() - job.export.created_at).total_seconds()
            metrics.end_to_end_seconds.observe(max(latency, 0.0))

    async def _wait(self, stop: asyncio.Event, at_most: float | None) -> None:
        await sleep_or_stop(stop, at_most, wake=self._wake)

    async def _drain(self, grace: float = 10.0) -> None:
        """On shutdown: let running attempts finish and record them (bounded)."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        self._starved = True  # every outcome recorded from now on wakes the wait below
        while (not self._results.empty() or self._busy) and loop.time() < end:
            self._wake.clear()
            await self._wait(asyncio.Event(), end - loop.time())


def log_outcome(job: Job, outcome: Outcome) -> None:
    """One INFO line per recorded attempt, worded like the seed's worker log:
    `Export completed: <id>`, `Export failed: <id>` (final), `Export attempt failed:
    <id>` (retried), with the ids and the error code as fields."""
    fields = {
        "export_id": str(outcome.export_id),
        "draft_id": str(job.export.draft_order_id),
        "org_id": job.export.org_id,
        "attempt": job.export.attempts,
        "error_code": outcome.error_code,
    }
    if outcome.status is ExportStatus.SENT:
        log.info("Export completed: %s", outcome.export_id, extra=fields)
    elif outcome.status is ExportStatus.FAILED:
        log.info("Export failed: %s (%s)", outcome.export_id, outcome.error_code, extra=fields)
    elif outcome.status is ExportStatus.PENDING:
        log.info(
            "Export attempt failed: %s (%s, attempt %d; will retry)",
            outcome.export_id,
            outcome.error_code,
            job.export.attempts,
            extra=fields,
        )
    else:
        log.info(
            "Export attempt not recorded: %s (another worker holds it now)",
            outcome.export_id,
            extra=fields,
        )
