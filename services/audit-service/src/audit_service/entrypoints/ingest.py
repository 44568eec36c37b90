"""Kafka handlers: map what was read to entries and hand them to the ingest use case."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Sequence

from orderflow_shared.messaging.envelope import Envelope
from prometheus_client import Counter, Gauge

from audit_service.adapters.mapping import RawRecord, entry_from_dead_letter, entry_from_envelope
from audit_service.domain.entry import AuditEntry
from audit_service.service_layer.ingest import ingest
from audit_service.service_layer.ports import Appender

_log = logging.getLogger(__name__)

ENTRIES_APPENDED = Counter(
    "orderflow_audit_entries_appended_total", "Audit entries appended to the log.", ["action"]
)
DUPLICATES_SKIPPED = Counter(
    "orderflow_audit_duplicate_events_total", "Events already in the log when delivered again."
)
CHAIN_HEAD_TIME = Gauge(
    "orderflow_audit_chain_head_timestamp_seconds",
    "When this process last moved an organisation's chain head (Unix time), by org: a"
    " head that stops moving while the org works, or moves back, shows in the chains"
    " (one series per organisation the process has seen since it started).",
    ["org_id"],
)
VERIFICATION_FAILURES = Counter(
    "orderflow_audit_verification_failures_total",
    "Verifications of an org's chain by GET /audit-log/verify that found a broken link.",
)


class IngestHandlers:
    def __init__(self, appender_factory: Callable[[], Appender]) -> None:
        self._appender_factory = appender_factory

    async def on_events(self, envelopes: list[Envelope]) -> None:
        await self._append([entry_from_envelope(e) for e in envelopes])

    async def on_dead_letters(self, records: list[RawRecord]) -> None:
        await self._append([entry_from_dead_letter(r) for r in records])

    async def _append(self, entries: Sequence[AuditEntry]) -> None:
        added = await ingest(self._appender_factory, entries)
        DUPLICATES_SKIPPED.inc(len(entries) - len(added))
        now = time.time()
        for action, count in collections.Counter(entry.action for entry in added).items():
            ENTRIES_APPENDED.labels(action).inc(count)
        for org_id in {entry.org_id for entry in added}:
            CHAIN_HEAD_TIME.labels(org_id).set(now)
        _log.debug("audit batch: %d read, %d new", len(entries), len(added))
