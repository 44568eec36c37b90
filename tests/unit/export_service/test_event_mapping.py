"""export-service's one mapping from domain events to wire contracts: every event the
aggregates record is published as its contract, under the subject, key and actor the
domain built by hand before, with every contract field read from the event."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from export_service.adapters.event_mapping import MAPPING
from export_service.domain import events
from orderflow_shared.contracts import (
    ErpConnectionChangedV1,
    EventData,
    ExportCircuitChangedV1,
    ExportDelayedV1,
    ExportFailedV1,
    ExportSentV1,
)

CONTRACTS, SOURCE, SYSTEM_ACTOR = MAPPING.contracts, MAPPING.source, MAPPING.system_actor
to_contract, to_envelope = MAPPING.to_contract, MAPPING.to_envelope
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DRAFT, EXPORT, CONNECTION = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def _concrete(cls: type) -> list[type]:
    subs = cls.__subclasses__()
    return [c for sub in subs for c in (_concrete(sub) or [sub]) if c.__module__ == events.__name__]


def test_every_event_the_domain_records_has_a_contract():
    assert set(_concrete(events.DomainEvent)) == set(CONTRACTS)


@pytest.mark.parametrize("event_type", list(CONTRACTS), ids=lambda t: t.__name__)
def test_a_contract_reads_each_of_its_fields_from_the_event(event_type):
    """No contract field falls back to its default for want of an event attribute
    (`reason` is the one constant of `export.delayed`)."""
    contract = CONTRACTS[event_type]
    names = {f.name for f in dataclasses.fields(event_type)} | {
        n for n in dir(event_type) if isinstance(getattr(event_type, n), property)
    }
    missing = set(contract.model_fields) - names - {"reason"}
    assert not missing, f"{event_type.__name__} lacks {sorted(missing)}"


ids = {"org_id": "org-a", "draft_id": DRAFT, "erp_export_id": EXPORT}
CASES: list[tuple[events.DomainEvent, EventData, str]] = [
    (
        events.ExportSent(
            export_storage_key="org-a/x.csv",
            remote_path="/inbox/x.csv",
            checksum_sha256="a" * 64,
            size_bytes=10,
            attempts=2,
            sent_at=NOW,
            **ids,
        ),
        ExportSentV1(
            draft_id=DRAFT,
            erp_export_id=EXPORT,
            export_storage_key="org-a/x.csv",
            remote_path="/inbox/x.csv",
            checksum_sha256="a" * 64,
            size_bytes=10,
            attempts=2,
            sent_at=NOW,
        ),
        str(DRAFT),
    ),
    (
        events.ExportFailed(
            error_code="auth_failed",
            error_message="refused",
            attempts=1,
            permanent=True,
            failed_at=NOW,
            **ids,
        ),
        ExportFailedV1(
            draft_id=DRAFT,
            erp_export_id=EXPORT,
            error_code="auth_failed",
            error_message="refused",
            attempts=1,
            permanent=True,
            failed_at=NOW,
        ),
        str(DRAFT),
    ),
    (
        events.ExportDelayed(
            connection_id=CONNECTION,
            error_code="connection_refused",
            error_message="down",
            attempts=0,
            next_attempt_at=NOW + timedelta(seconds=5),
            deliver_by=NOW + timedelta(hours=1),
            delayed_at=NOW,
            **ids,
        ),
        ExportDelayedV1(
            draft_id=DRAFT,
            erp_export_id=EXPORT,
            connection_id=CONNECTION,
            error_code="connection_refused",
            error_message="down",
            attempts=0,
            next_attempt_at=NOW + timedelta(seconds=5),
            deliver_by=NOW + timedelta(hours=1),
            delayed_at=NOW,
        ),
        str(DRAFT),
    ),
    (
        events.CircuitMoved(
            connection_id=CONNECTION,
            org_id="org-a",
            state="open",
            previous_state="closed",
            consecutive_failures=5,
            last_error_code="connection_refused",
            next_probe_at=NOW + timedelta(seconds=30),
            since=NOW,
        ),
        ExportCircuitChangedV1(
            connection_id=CONNECTION,
            org_id="org-a",
            state="open",
            previous_state="closed",
            since=NOW,
            consecutive_failures=5,
            last_error_code="connection_refused",
            next_probe_at=NOW + timedelta(seconds=30),
            changed_at=NOW,
        ),
        str(CONNECTION),
    ),
]


@pytest.mark.parametrize(("event", "contract", "subject"), CASES, ids=lambda c: type(c).__name__)
def test_an_event_of_the_service_itself_is_published_as_before(event, contract, subject):
    assert to_contract(event) == contract
    envelope = to_envelope(event)
    assert json.loads(envelope.data) == json.loads(contract.model_dump_json())
    assert envelope.spec.model is type(contract)
    assert (envelope.subject, envelope.key) == (subject, subject)
    assert (envelope.source, envelope.org_id) == (SOURCE, "org-a")
    assert envelope.actor_id == SYSTEM_ACTOR == "system:export-service"


def test_a_connection_change_names_the_person_who_made_it():
    event = events.ConnectionChanged(
        connection_id=CONNECTION,
        org_id="org-b",
        actor_id="user-7",
        change="activated",
        name="Main ERP",
        connector_type="sftp_dropzone",
        is_active=True,
        changed_at=NOW,
    )
    envelope = to_envelope(event)
    assert json.loads(envelope.data) == json.loads(
        ErpConnectionChangedV1(
            connection_id=CONNECTION,
            org_id="org-b",
            name="Main ERP",
            connector_type="sftp_dropzone",
            is_active=True,
            change="activated",
            changed_at=NOW,
        ).model_dump_json()
    )
    assert envelope.topic == "erp_connection.changed"
    assert (envelope.subject, envelope.key, envelope.org_id) == (
        str(CONNECTION),
        str(CONNECTION),
        "org-b",
    )
    assert envelope.actor_id == "user-7"


def test_an_event_with_no_contract_is_refused():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Unpublished(events.ConnectionEvent):
        pass

    with pytest.raises(TypeError, match="Unpublished"):
        to_contract(Unpublished(org_id="org-a", connection_id=CONNECTION))
