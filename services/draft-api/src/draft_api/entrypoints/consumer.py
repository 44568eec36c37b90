"""Kafka consumer of export results and ERP connection changes (group `draft-api`)."""

from __future__ import annotations

import dataclasses
import logging

from orderflow_shared import tracing
from orderflow_shared.contracts import (
    ErpConnectionChangedV1,
    ExportDelayedV1,
    ExportFailedV1,
    ExportSentV1,
    Topic,
)
from orderflow_shared.messaging.consumer import BatchHandler
from orderflow_shared.messaging.envelope import Envelope

from draft_api.domain.connector import ErpConnector
from draft_api.domain.model import ExportProgress
from draft_api.domain.records import build
from draft_api.service_layer import results
from draft_api.service_layer.ports import UnitOfWork, UnitOfWorkFactory

_log = logging.getLogger(__name__)

TOPICS = (
    Topic.EXPORT_SENT,
    Topic.EXPORT_FAILED,
    Topic.EXPORT_DELAYED,
    Topic.ERP_CONNECTION_CHANGED,
)


def refuse_untrusted(envelope: Envelope) -> str | None:
    """Why a readable record must not be applied (the runner dead-letters it)."""
    data = envelope.parse()
    if isinstance(data, ErpConnectionChangedV1) and data.org_id != envelope.org_id:
        return (
            f"envelope org {envelope.org_id[:200]!r} is not the connection's org "
            f"{data.org_id[:200]!r}"
        )
    return None


def make_handler(uow_factory: UnitOfWorkFactory) -> BatchHandler:
    """One transaction per batch: one inbox statement claims every event of the fetch,
    then each new one is applied in order; the runner commits offsets after. Each is
    applied in a span of the event's trace (the push's: its status change shows in the
    trace that began with the push request)."""

    async def handle(events: list[Envelope]) -> None:
        batch = [(envelope, reported(envelope)) for envelope in events]
        applying = [(envelope, event) for envelope, event in batch if event is not None]
        if not applying:
            return
        changed = await results.apply_reported(
            uow_factory(), [_traced(envelope, event) for envelope, event in applying]
        )
        if _log.isEnabledFor(logging.DEBUG):  # one line per event costs at volume
            for (envelope, _), did in zip(applying, changed, strict=True):
                _log.debug("applied %s event %s (changed=%s)", envelope.type, envelope.id, did)

    return handle


def _traced(envelope: Envelope, event: results.Reported) -> results.Reported:
    async def effect(uow: UnitOfWork, progress: ExportProgress | None) -> bool:
        with tracing.span(
            f"apply {envelope.type}",
            parent=tracing.envelope_carrier(envelope) or None,
            attributes={"orderflow.event_id": str(envelope.id)},
        ):
            return await event.effect(uow, progress)

    return dataclasses.replace(event, effect=effect)


async def apply(uow_factory: UnitOfWorkFactory, envelope: Envelope) -> None:
    """Apply one event in a transaction of its own (what a batch does for each)."""
    await make_handler(uow_factory)([envelope])


def reported(envelope: Envelope) -> results.Reported | None:
    """What the event does to draft-api's state; None when draft-api ignores it."""
    data = envelope.parse()
    if isinstance(data, ExportSentV1 | ExportFailedV1):
        return results.export_result(_export_result(envelope, data))
    if isinstance(data, ExportDelayedV1):
        return results.export_delay(
            envelope.id,
            envelope.org_id,
            data.draft_id,
            data.erp_export_id,
            {
                "waiting_for_dropzone": True,
                "error_code": data.error_code,
                "error_message": data.error_message,
                "attempts": data.attempts,
                "next_attempt_at": data.next_attempt_at.isoformat(),
                "deliver_by": data.deliver_by.isoformat() if data.deliver_by else None,
                "permanent": False,
            },
        )
    if isinstance(data, ErpConnectionChangedV1):
        if refuse_untrusted(envelope):
            _log.error("refused %s event %s: org mismatch", envelope.type, envelope.id)
            return None
        return results.connector_change(
            envelope.id,
            build(ErpConnector, data),
            # records keyed by the connection id are in the order export-service wrote
            # them; older ones were keyed by the org (see results.record_connector_change)
            keyed_by_connection=envelope.key == str(data.connection_id),
        )
    _log.info("ignoring %s event %s", envelope.type, envelope.id)
    return None


def _export_result(envelope: Envelope, data: ExportSentV1 | ExportFailedV1) -> results.ExportResult:
    """An export.sent or export.failed as the result the use case records."""
    error: dict[str, object] | None = None
    if isinstance(data, ExportFailedV1):
        error = {
            "error_code": data.error_code,
            "error_message": data.error_message,
            "attempts": data.attempts,
            "permanent": data.permanent,
        }
    return results.ExportResult(
        event_id=envelope.id,
        org_id=envelope.org_id,
        draft_id=data.draft_id,
        erp_export_id=data.erp_export_id,
        sent=error is None,
        at=data.sent_at if isinstance(data, ExportSentV1) else data.failed_at,
        error=error,
    )
