"""Use cases of the export pipeline: record a push request, claim due exports, deliver one."""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta

from orderflow_shared.contracts import DraftPushRequestedV1

from export_service.domain.connection import ErpConnection
from export_service.domain.errors import DeliveryError, ErrorCode
from export_service.domain.export import Delivery, Export, ExportStatus
from export_service.domain.filenames import render_file_name
from export_service.domain.renderers import checksum, render
from export_service.domain.retry import RetryPolicy
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


@dataclass(frozen=True)
class Job:
    """One claimed export, with the connection it goes to (None when it vanished)."""

    export: Export
    connection: ErpConnection | None


@dataclass(frozen=True)
class Outcome:
    export_id: uuid.UUID
    status: ExportStatus | None  # None: the lease was lost, another worker owns it
    error_code: str | None = None


async def record_push_requests(uow: UnitOfWork, requests: list[PushRequest], clock: Clock) -> int:
    """Record one PENDING export per new request (one transaction); how many are due."""
    due = 0
    async with uow:
        for request in requests:
            if not await uow.claim_event(CONSUMER, request.event_id):
                continue
            export = await _new_export(uow, request, clock)
            if await uow.exports.add(export):
                uow.publish(export.events)
                due += export.status is ExportStatus.PENDING
        await uow.commit()
    return due


async def _new_export(uow: UnitOfWork, request: PushRequest, clock: Clock) -> Export:
    data = request.data
    now = clock()
    export = Export(
        id=data.erp_export_id,
        draft_order_id=data.draft_id,
        org_id=request.org_id,
        attempt_no=data.attempt,
        snapshot=data.order,
        created_at=now,
        next_attempt_at=now,
    )
    connection = await uow.connections.active_for_org(request.org_id)
    if connection is None:
        export.fail_without_connection(now)
        return export
    export.connection_id = connection.id
    export.file_format = connection.file_format
    export.file_name = render_file_name(
        connection.file_name_template,
        external_ref=data.order.external_ref,
        draft_id=data.draft_id,
        export_id=data.erp_export_id,
        on_date=data.requested_at.date(),
        extension=connection.file_format.extension,
    )
    return export


async def claim_due_exports(
    uow: UnitOfWork, *, owner: str, lease: timedelta, limit: int, clock: Clock
) -> list[Job]:
    """Claim up to `limit` due exports under a lease; other workers skip them."""
    async with uow:
        now = clock()
        exports = await uow.exports.lock_due(now, limit)
        if not exports:
            return []
        for export in exports:
            export.claim(owner, now, lease)
        await uow.exports.save_claimed(exports)
        ids = {e.connection_id for e in exports if e.connection_id is not None}
        connections = await uow.connections.get_many(ids)
        await uow.commit()
    return [Job(e, connections.get(e.connection_id) if e.connection_id else None) for e in exports]


def storage_key(export: Export) -> str:
    extension = export.file_format.extension if export.file_format else "dat"
    created = export.created_at
    return f"{export.org_id}/{created:%Y/%m/%d}/{export.id}.{extension}"


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
) -> Outcome:
    """Render, store and deliver one claimed export, then record the outcome."""
    result: Delivery | DeliveryError
    try:
        result = await _attempt(job, transports, store)
    except DeliveryError as error:
        result = error
    except Exception as exc:  # a bug must cost an attempt, not loop forever
        log.exception("delivery of export %s crashed", job.export.id)
        result = DeliveryError(ErrorCode.INTERNAL_ERROR, f"internal error ({type(exc).__name__})")
    async with uow:
        export = await uow.exports.get_for_update(job.export.id)
        if export is None or not export.holds_lease(owner):
            return Outcome(job.export.id, None)
        now = clock()
        if isinstance(result, Delivery):
            export.mark_sent(result, now)
        else:
            export.attempt_failed(result, policy, now, rng)
        await uow.exports.save(export)
        uow.publish(export.events)
        await uow.commit()
    code = export.error_json.get("code") if export.error_json else None
    return Outcome(export.id, export.status, str(code) if code else None)


async def _attempt(job: Job, transports: Transports, store: ArtifactStore) -> Delivery:
    export, connection = job.export, job.connection
    if connection is None or export.file_format is None or export.file_name is None:
        raise DeliveryError(
            ErrorCode.INVALID_CONFIGURATION, "the export's ERP connection no longer exists"
        )
    try:
        content = render(export.snapshot, export.file_format, export.id)
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
    remote_path = await transports[connection.connector_type].deliver(connection, upload)
    return Delivery(
        remote_path=remote_path, checksum=digest, size_bytes=len(content), storage_key=key
    )
