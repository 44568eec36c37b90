"""Sample OrderFlow events of every contract type, for the audit-service tests.

Loaded by path from the audit conftests (tests are not a package).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from orderflow_shared.contracts.events import (
    DraftApprovedV1,
    DraftCreatedV1,
    DraftPushRequestedV1,
    DraftValidatedV1,
    ErpConnectionChangedV1,
    EventData,
    ExportFailedV1,
    ExportSentV1,
    OrderLineSnapshot,
    OrderSnapshot,
    spec_for_model,
)
from orderflow_shared.contracts.services import expected_source
from orderflow_shared.messaging.envelope import Envelope

T0 = datetime(2025, 12, 27, 10, 30, tzinfo=UTC)


def event_data(draft_id: uuid.UUID, org_id: str, export_id: uuid.UUID) -> list[EventData]:
    """One payload of each event type (plus a retried push), in flow order."""
    order = OrderSnapshot(
        draft_id=draft_id,
        org_id=org_id,
        customer_id="C-1001",
        external_ref="PO-4711",
        currency="EUR",
        total=Decimal("28.50"),
        approved_by_user_id="approver-1",
        approved_at=T0,
        created_at=T0,
        lines=[
            OrderLineSnapshot(
                line_no=1,
                sku="SKU-1",
                description="Widget",
                quantity=Decimal("3"),
                unit="EA",
                unit_price=Decimal("9.50"),
                currency="EUR",
                line_total=Decimal("28.50"),
            )
        ],
    )
    return [
        DraftCreatedV1(draft_id=draft_id, customer_id="C-1001", line_count=1, created_at=T0),
        DraftValidatedV1(draft_id=draft_id, status="READY", validated_at=T0),
        DraftApprovedV1(draft_id=draft_id, approved_by_user_id="approver-1", approved_at=T0),
        DraftPushRequestedV1(
            draft_id=draft_id, erp_export_id=export_id, attempt=1, requested_at=T0, order=order
        ),
        ExportFailedV1(
            draft_id=draft_id,
            erp_export_id=export_id,
            error_code="sftp_unreachable",
            error_message="SFTP unreachable",
            attempts=5,
            permanent=False,
            failed_at=T0,
        ),
        DraftPushRequestedV1(
            draft_id=draft_id,
            erp_export_id=export_id,
            attempt=2,
            is_retry=True,
            requested_at=T0,
            order=order,
        ),
        ExportSentV1(
            draft_id=draft_id,
            erp_export_id=export_id,
            export_storage_key="exports/x.csv",
            remote_path="/inbox/x.csv",
            checksum_sha256="0" * 64,
            size_bytes=120,
            attempts=1,
            sent_at=T0,
        ),
        ErpConnectionChangedV1(
            connection_id=uuid.uuid4(),
            org_id=org_id,
            name="Demo ERP dropzone",
            connector_type="sftp_dropzone",
            is_active=True,
            change="created",
            changed_at=T0,
        ),
    ]


EXPECTED_ACTIONS = [
    "DRAFT_CREATED",
    "DRAFT_VALIDATED",
    "DRAFT_APPROVED",
    "DRAFT_PUSHED",
    "EXPORT_FAILED",
    "DRAFT_PUSH_RETRIED",
    "EXPORT_SENT",
    "ERP_CONNECTION_CHANGED",
]


def flow(org_id: str, actor: str = "user-1", draft_id: uuid.UUID | None = None) -> list[Envelope]:
    """Envelopes of one draft's whole flow, a second apart, each with a fresh id."""
    draft_id = draft_id or uuid.uuid4()
    export_id = uuid.uuid4()
    envelopes = []
    for n, data in enumerate(event_data(draft_id, org_id, export_id)):
        subject = (
            str(data.connection_id) if isinstance(data, ErpConnectionChangedV1) else str(draft_id)
        )
        envelopes.append(
            Envelope.wrap(
                data,
                source=str(expected_source(spec_for_model(type(data)).topic)),
                subject=subject,
                org_id=org_id,
                actor_id=actor,
                key=subject,
                time=T0 + timedelta(seconds=n),
            )
        )
    return envelopes
