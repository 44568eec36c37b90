"""The delivery events of issue 16 are audited: a delayed export, a circuit change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from audit_service.adapters.mapping import entry_from_envelope
from orderflow_shared.contracts import ExportCircuitChangedV1, ExportDelayedV1
from orderflow_shared.messaging.envelope import Envelope

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_delayed_export_is_an_entry_of_the_draft():
    draft_id = uuid.uuid4()
    data = ExportDelayedV1(
        draft_id=draft_id,
        erp_export_id=uuid.uuid4(),
        error_code="connection_refused",
        error_message="refused",
        attempts=2,
        next_attempt_at=T0,
        delayed_at=T0,
    )
    envelope = Envelope.wrap(
        data,
        source="export-service",
        subject=str(draft_id),
        org_id="org-a",
        actor_id="system:export-service",
    )
    entry = entry_from_envelope(envelope)
    assert entry.action == "EXPORT_DELAYED" and entry.entity_type == "draft_order"
    assert entry.entity_id == str(draft_id) and entry.source_topic == "export.delayed"
    assert entry.data["reason"] == "waiting_for_dropzone"


def test_a_circuit_change_is_an_entry_of_the_connection():
    connection_id = uuid.uuid4()
    data = ExportCircuitChangedV1(
        connection_id=connection_id,
        org_id="org-a",
        state="open",
        previous_state="closed",
        since=T0,
        consecutive_failures=5,
        last_error_code="connection_refused",
        next_probe_at=T0,
        changed_at=T0,
    )
    envelope = Envelope.wrap(
        data,
        source="export-service",
        subject=str(connection_id),
        org_id="org-a",
        actor_id="system:export-service",
        key=str(connection_id),
    )
    entry = entry_from_envelope(envelope)
    assert entry.action == "ERP_CONNECTION_CIRCUIT_CHANGED"
    assert entry.entity_type == "erp_connection" and entry.entity_id == str(connection_id)
    assert entry.source_topic == "export.circuit_changed" and entry.data["state"] == "open"
