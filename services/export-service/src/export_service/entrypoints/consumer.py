"""Kafka consumer of `draft.push_requested` (group `export-service`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from orderflow_shared import tracing
from orderflow_shared.contracts import DraftPushRequestedV1, Topic
from orderflow_shared.messaging.consumer import BatchHandler, ConsumerRunner
from orderflow_shared.messaging.envelope import Envelope
from orderflow_shared.messaging.kafka import KafkaOptions

from export_service.domain.retry import DEFAULT_DEADLINE
from export_service.entrypoints.metrics import export_metrics
from export_service.service_layer.exports import (
    CONSUMER,
    PushRequest,
    push_request_mismatch,
    record_push_requests,
)
from export_service.service_layer.ports import Clock, UnitOfWorkFactory

log = logging.getLogger(__name__)


def make_push_handler(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    on_due: Callable[[], None],
    *,
    deadline: timedelta = DEFAULT_DEADLINE,
) -> BatchHandler:
    """Record a batch of push requests in one transaction, then wake the workers;
    each export is retried until `deadline` after it was recorded."""

    async def handle(events: list[Envelope]) -> None:
        requests = []
        for envelope in events:
            data = envelope.parse()
            if not isinstance(data, DraftPushRequestedV1):
                continue
            if not _usable_org(envelope.org_id):
                # Retrying cannot help and would block the partition: leave it to the
                # audit trail (it sees every record) and go on.
                log.error("push request %s has an unusable org id; skipped", envelope.id)
                continue
            mismatch = push_request_mismatch(envelope.org_id, data)
            if mismatch:  # the runner dead-letters these; a handler called directly skips
                log.error("push request %s refused: %s", envelope.id, mismatch)
                continue
            requests.append(
                PushRequest(envelope.id, envelope.org_id, data, tracing.envelope_carrier(envelope))
            )
        if not requests:
            return
        due = await record_push_requests(uow_factory(), requests, clock, deadline=deadline)
        export_metrics().recorded.inc(len(requests))
        if due:
            on_due()

    return handle


def _usable_org(org_id: str) -> bool:
    return bool(org_id) and len(org_id) <= 200 and org_id.isprintable()


def refuse_untrusted(envelope: Envelope) -> str | None:
    """Why a push request must not be delivered though it is readable (None: fine).

    The record's envelope says for which org and draft it is; the order snapshot says
    whose order it is. Delivering when they disagree would put one org's order into
    another org's dropzone, so the record is dead-lettered with the reason instead.
    """
    data = envelope.parse()
    if not isinstance(data, DraftPushRequestedV1):
        return None
    return push_request_mismatch(envelope.org_id, data)


def make_consumer(kafka: KafkaOptions, handler: BatchHandler) -> ConsumerRunner[Envelope]:
    return ConsumerRunner(
        kafka=kafka,
        group_id=CONSUMER,
        topics=[Topic.DRAFT_PUSH_REQUESTED],
        handler=handler,
        client_id=CONSUMER,
        refuse=refuse_untrusted,
    )
