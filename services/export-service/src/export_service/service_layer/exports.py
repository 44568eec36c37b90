"""Use cases of the export pipeline: record a push request, claim due exports, deliver one."""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from orderflow_shared import tracing
from orderflow_shared.contracts import DraftPushRequestedV1

from export_service.domain.circuit import CircuitPolicy
from export_service.domain.connection import ErpConnection
from export_service.domain.errors import DeliveryError, ErrorCode, InvalidFileNameTemplate
from export_service.domain.export import Delivery, Export, ExportStatus
from export_service.domain.filenames import render_file_name
from export_service.domain.renderers import checksum, render
from export_service.domain.retry import DEFAULT_DEADLINE, RetryPolicy
from export_service.service_layer.ports import (
    ArtifactStore,
    Clock,
    Transports,
    UnitOfWork,
    Upload,
)

CONSUMER = "export-service"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushRequest:
    event_id: uuid.UUID
    org_id: str
    data: DraftPushRequestedV1
    #: W3C trace context of the record (the consumer's span), kept on the export
    trace_context: dict[str, str] | None = None


@dataclass(frozen=True)
class Job:
    """One claimed export, with the connection it goes to (None when it vanished)."""

    export: Export
    connection: ErpConnection | None
    #: trace context of this attempt's span (the worker's), under which its outcome
    #: event is written; None: the export's own (the push request's)
    trace_context: dict[str, str] | None = None


@dataclass(frozen=True)
class Outcome:
    export_id: uuid.UUID
    status: ExportStatus | None  # None: the lease was lost, another worker owns it
    error_code: str | None = None


def push_request_mismatch(org_id: str, data: DraftPushRequestedV1) -> str | None:
    """Why a push request contradicts itself (None when its claims agree).

    The envelope's org must be the order snapshot's org (else one org's record could
    put an order into another org's dropzone), and the request's draft the snapshot's.
    """
    if data.order.org_id != org_id:
        return f"envelope org {org_id[:200]!r} is not the order's org {data.order.org_id[:200]!r}"
    if data.order.draft_id != data.draft_id:
        return f"draft {data.draft_id} carries the order of draft {data.order.draft_id}"
    return None


async def record_push_requests(
    uow: UnitOfWork,
    requests: list[PushRequest],
    clock: Clock,
    *,
    deadline: timedelta = DEFAULT_DEADLINE,
) -> int:
    """Record one PENDING export per new request (one transaction); how many are due.
    Each is retried on transient errors until its connection's deadline from now, or
    `deadline` when the connection sets none."""
    async with uow:
        # every request's export is made up front, and the inbox claim and the insert of
        # the new events' exports are one step (one statement in Postgres)
        active: dict[str, ErpConnection | None] = {}
        candidates: list[tuple[uuid.UUID, Export]] = []
        for request in requests:
            if push_request_mismatch(request.org_id, request.data):
                continue  # never delivered, whoever calls this (its event is still claimed)
            if request.org_id not in active:
                active[request.org_id] = await uow.connections.active_for_org(request.org_id)
            export = _new_export(request, active[request.org_id], clock(), deadline)
            candidates.append((request.event_id, export))
        inserted = await uow.claim_and_add(CONSUMER, [r.event_id for r in requests], candidates)
        due = 0
        for export in inserted:
            uow.publish(export.events)
            due += export.status is ExportStatus.PENDING
        await uow.commit()
    return due


def _new_export(
    request: PushRequest, connection: ErpConnection | None, now: datetime, deadline: timedelta
) -> Export:
    data = request.data
    export = Export(
        id=data.erp_export_id,
        draft_order_id=data.draft_id,
        org_id=request.org_id,
        attempt_no=data.attempt,
        snapshot=data.order,
        created_at=now,
        next_attempt_at=now,
        deliver_by=now + deadline,
        trace_context=request.trace_context or None,
    )
    if connection is not None and connection.delivery_deadline_seconds is not None:
        export.deliver_by = now + timedelta(seconds=connection.delivery_deadline_seconds)
    if connection is None:
        export.fail_without_connection(now)
        return export
    export.connection_id = connection.id
    export.file_format = connection.file_format
    try:
        export.file_name = render_file_name(
            connection.file_name_template,
            external_ref=data.order.external_ref,
            draft_id=data.draft_id,
            export_id=data.erp_export_id,
            on_date=data.requested_at.date(),
            extension=connection.file_format.extension,
        )
    except InvalidFileNameTemplate as exc:  # a stored template edited by hand
        export.fail(DeliveryError(ErrorCode.INVALID_CONFIGURATION, exc.detail), now)
    return export


#: overdue exports failed per claim (the rest on the next claims)
OVERDUE_BATCH = 200


@dataclass(frozen=True)
class Claim:
    """What one claim took, and what the worker should wait for next."""

    jobs: list[Job]
    #: another worker was claiming at the same moment (it takes what is due): nothing
    #: was tried here
    contended: bool = False
    #: when a claim could next find work, read in the claim's transaction when it took
    #: fewer than it could (None: nothing waits, or not read)
    next_due: datetime | None = None


async def claim_exports(
    uow: UnitOfWork,
    *,
    owner: str,
    lease: timedelta,
    limit: int,
    clock: Clock,
    per_connection: int = 1_000_000,
    on_expired: Callable[[Export], None] | None = None,
) -> Claim:
    """Claim up to `limit` due exports under a lease; other workers skip them.

    Claims of all workers are serialised by a lock that is tried, not waited for: when
    another worker holds it, it is claiming what is due right now and this claim takes
    nothing (`contended`). Otherwise, first the exports whose deadline passed while they
    waited fail (`on_expired` hears of each once the transaction committed); then each
    open circuit whose probe is due gets one waiting export as its probe; then due
    exports of closed circuits, at most `per_connection` in flight per connection. Each
    step runs only when the lock's statement found it has something to do. When the
    claim took fewer than `limit`, the same transaction reads when work falls due next;
    when it took `limit`, it wakes the other workers at its commit.
    """
    async with uow:
        now = clock()
        chores = await uow.exports.lock_claims(now)
        if not chores.held:
            return Claim([], contended=True)
        expired = await uow.exports.lock_overdue(now, OVERDUE_BATCH) if chores.overdue else []
        for export in expired:
            export.expire(now)
            await uow.exports.save(export)
            uow.publish(export.events)
        if chores.unannounced:
            await _announce_waits_behind_open_circuits(uow, now)
        probes = await _claim_probes(uow, owner, lease, limit, now) if chores.probes else []
        due = (
            await uow.exports.lock_due(now, limit - len(probes), per_connection)
            if chores.due
            else []
        )
        for export in due:
            export.claim(owner, now, lease)
        exports = probes + due
        connections: dict[uuid.UUID, ErpConnection] = {}
        if exports:
            await uow.exports.save_claimed(exports)
            ids = {e.connection_id for e in exports if e.connection_id is not None}
            connections = await uow.connections.get_many(ids)
        if len(exports) < limit:
            due_at = await uow.exports.next_due(now)
        else:
            # more may be due than this worker could take: wake the others (they skip
            # a claim that finds the lock taken) once this claim is committed
            await uow.exports.announce_due()
            due_at = None
        await uow.commit()
    if on_expired is not None:
        for export in expired:
            on_expired(export)
    jobs = [Job(e, connections.get(e.connection_id) if e.connection_id else None) for e in exports]
    return Claim(jobs, next_due=due_at)


async def _announce_waits_behind_open_circuits(uow: UnitOfWork, now: datetime) -> None:
    """Exports that came, or sat untried, while their connection's circuit opened are
    not tried for now: each says once that it waits for the dropzone, and why."""
    behind = await uow.exports.lock_unannounced_behind_open_circuits(OVERDUE_BATCH)
    if not behind:
        return
    circuits = await uow.circuits.get_many({e.connection_id for e in behind if e.connection_id})
    for export in behind:
        circuit = circuits.get(export.connection_id) if export.connection_id else None
        if circuit is None:
            continue
        export.wait_behind_circuit(circuit.last_error_code, circuit.next_probe_at, now)
        await uow.exports.save(export)
        uow.publish(export.events)


async def _claim_probes(
    uow: UnitOfWork, owner: str, lease: timedelta, limit: int, now: datetime
) -> list[Export]:
    probes: list[Export] = []
    if limit <= 0:
        return probes
    for circuit in await uow.circuits.lock_probe_due(now, limit):
        export = await uow.exports.lock_next_waiting(circuit.connection_id, now)
        if export is None:
            continue  # nothing waits: the next export to come is the probe
        export.claim(owner, now, lease, probe=True)
        circuit.start_probe(export.id, now, lease)
        await uow.circuits.save(circuit)
        uow.publish(circuit.events)
        probes.append(export)
    return probes


async def circuit_counts(uow: UnitOfWork) -> dict[str, int]:
    """How many connections' circuits are in each state (rows only: no row is closed)."""
    async with uow:
        return await uow.circuits.count_by_state()


async def export_backlog(uow: UnitOfWork) -> dict[str, tuple[int, datetime]]:
    """Exports not yet final per status: how many, and the oldest one's creation time."""
    async with uow:
        return await uow.exports.backlog()


def storage_key(export: Export) -> str:
    extension = export.file_format.extension if export.file_format else "dat"
    created = export.created_at
    return f"{export.org_id}/{created:%Y/%m/%d}/{export.id}.{extension}"


Result = Delivery | DeliveryError


async def attempt(job: Job, transports: Transports, store: ArtifactStore) -> Result:
    """Render, store and deliver one claimed export; what happened, as a value."""
    try:
        return await _attempt(job, transports, store)
    except DeliveryError as error:
        return error
    except Exception as exc:  # a bug must cost an attempt, not loop forever
        log.exception("delivery of export %s crashed", job.export.id)
        return DeliveryError(ErrorCode.INTERNAL_ERROR, f"internal error ({type(exc).__name__})")


async def record_outcomes(
    uow: UnitOfWork,
    results: list[tuple[Job, Result]],
    *,
    owner: str,
    policy: RetryPolicy,
    clock: Clock,
    rng: random.Random | None = None,
    circuit_policy: CircuitPolicy | None = None,
) -> list[Outcome]:
    """Record the outcome of several attempts in one transaction (one commit), and
    what they say about each connection's circuit."""
    updated: list[Export] = []
    for job, result in results:
        # The claim gave this worker the export under a lease; while the lease holds,
        # nobody else changes the row, so the claimed copy is the current state.
        export = replace(job.export, events=[])
        if isinstance(result, Delivery):
            export.mark_sent(result, clock())
        else:
            export.attempt_failed(result, policy, clock(), rng)
        updated.append(export)
    async with uow:
        saved = await uow.exports.save_if_leased(updated, owner)
        for (job, _), export in zip(results, updated, strict=True):
            if export.id in saved:
                # the outcome event continues the trace of the attempt
                with tracing.attached(job.trace_context or export.trace_context):
                    uow.publish(export.events)
        recorded = [(job, result) for job, result in results if job.export.id in saved]
        await _update_circuits(uow, recorded, circuit_policy or CircuitPolicy(), clock())
        await uow.commit()
    return [_outcome(export, export.id in saved) for export in updated]


async def _update_circuits(
    uow: UnitOfWork, results: list[tuple[Job, Result]], policy: CircuitPolicy, now: datetime
) -> None:
    """Count each connection's successes and failures; lock and write a circuit only
    when it changes (a success on a healthy connection writes nothing)."""
    orgs = {
        job.export.connection_id: job.export.org_id
        for job, _ in results
        if job.export.connection_id is not None
    }
    if not orgs:
        return
    known = await uow.circuits.get_many(orgs)
    failing = {
        job.export.connection_id for job, result in results if isinstance(result, DeliveryError)
    }
    touched = {
        cid: org
        for cid, org in orgs.items()
        if cid in failing or (cid in known and not known[cid].is_pristine)
    }
    circuits = await uow.circuits.lock_many(touched, now)
    for job, result in results:
        circuit = circuits.get(job.export.connection_id) if job.export.connection_id else None
        if circuit is None:
            continue
        if isinstance(result, Delivery):
            circuit.delivered(now)
        else:
            circuit.failed(result, now, policy, job.export.id)
    for circuit in circuits.values():
        await uow.circuits.save(circuit)
        uow.publish(circuit.events)


def _outcome(export: Export, saved: bool) -> Outcome:
    if not saved:
        return Outcome(export.id, None)
    code = export.error_json.get("code") if export.error_json else None
    return Outcome(export.id, export.status, str(code) if code else None)


async def deliver(
    job: Job,
    *,
    owner: str,
    uow: UnitOfWork,
    transports: Transports,
    store: ArtifactStore,
    policy: RetryPolicy,
    clock: Clock,
    rng: random.Random | None = None,
    circuit_policy: CircuitPolicy | None = None,
) -> Outcome:
    """Attempt one claimed export and record its outcome."""
    result = await attempt(job, transports, store)
    (outcome,) = await record_outcomes(
        uow,
        [(job, result)],
        owner=owner,
        policy=policy,
        clock=clock,
        rng=rng,
        circuit_policy=circuit_policy,
    )
    return outcome


async def _attempt(job: Job, transports: Transports, store: ArtifactStore) -> Delivery:
    export, connection = job.export, job.connection
    if connection is None or export.file_format is None or export.file_name is None:
        raise DeliveryError(
            ErrorCode.INVALID_CONFIGURATION, "the export's ERP connection no longer exists"
        )
    try:
        content = render(
            export.snapshot,
            export.file_format,
            export.id,
            csv_formula_guard=connection.csv_formula_guard,
        )
    except (ValueError, TypeError) as exc:
        raise DeliveryError(ErrorCode.RENDER_FAILED, f"cannot render the order: {exc}") from exc
    digest = checksum(content)
    key = storage_key(export)
    try:
        await store.put(key, content)
    except OSError as exc:
        raise DeliveryError(
            ErrorCode.LOCAL_IO_ERROR, f"cannot store the artifact: {exc.strerror}"
        ) from exc
    upload = Upload(
        file_name=export.file_name,
        content=content,
        checksum=digest,
        check_existing=export.may_already_be_delivered,
    )
    with tracing.span(
        f"upload {connection.connector_type.value}",
        kind=tracing.SpanKind.CLIENT,
        attributes={"orderflow.export_id": str(export.id), "orderflow.file_name": export.file_name},
    ):
        remote_path = await transports[connection.connector_type].deliver(connection, upload)
    return Delivery(
        remote_path=remote_path, checksum=digest, size_bytes=len(content), storage_key=key
    )
