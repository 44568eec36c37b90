"""Event data carried in the value of each Kafka record (CloudEvents binary mode).

Envelope attributes (id, type, source, time, subject, org, actor) travel in headers;
see `orderflow_shared.messaging.envelope`. A breaking change is a new `...V2` model
and a new `ce_type`; the JSON Schemas under `shared/schemas/` are regenerated with
`make schemas` and a test fails when they are stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from orderflow_shared.contracts.topics import Topic

Money = Decimal


class EventData(BaseModel):
    """Base of every event payload: immutable, no unknown fields on the way out."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class ValidationIssue(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str = Field(description="Path of the offending field, e.g. `lines[0].quantity`.")
    code: str = Field(description="Machine-readable code, e.g. `quantity_not_positive`.")
    message: str = Field(description="Human-readable explanation.")


class OrderLineSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True)

    line_no: int = Field(ge=1)
    sku: str
    description: str
    quantity: Decimal
    unit: str = Field(description="UN/ECE Recommendation 20 unit code, e.g. EA, KGM, MTR.")
    unit_price: Decimal
    currency: str = Field(min_length=3, max_length=3)
    line_total: Decimal


class OrderSnapshot(BaseModel):
    """Everything the ERP file needs, frozen at the moment of the push."""

    model_config = ConfigDict(frozen=True)

    draft_id: UUID
    org_id: str
    customer_id: str
    external_ref: str | None = None
    currency: str = Field(min_length=3, max_length=3)
    total: Decimal
    approved_by_user_id: str | None = None
    approved_at: datetime | None = None
    created_at: datetime
    lines: list[OrderLineSnapshot]


class DraftCreatedV1(EventData):
    """A draft sales order was created."""

    draft_id: UUID
    customer_id: str
    external_ref: str | None = None
    line_count: int = Field(ge=0)
    status: Literal["NEW"] = "NEW"
    created_at: datetime


class DraftValidatedV1(EventData):
    """Validation ran; the draft is READY or NEEDS_REVIEW with the issues found."""

    draft_id: UUID
    status: Literal["READY", "NEEDS_REVIEW"]
    issues: list[ValidationIssue] = Field(default_factory=list)
    validated_at: datetime


class DraftApprovedV1(EventData):
    """A person with the approver role approved a READY draft."""

    draft_id: UUID
    approved_by_user_id: str
    approved_at: datetime


class DraftPushRequestedV1(EventData):
    """A push (or a retry) was accepted; export-service is to deliver the order."""

    draft_id: UUID
    erp_export_id: UUID
    attempt: int = Field(ge=1, description="1 for the first push, +1 for each retry-push.")
    is_retry: bool = False
    requested_at: datetime
    order: OrderSnapshot


class ExportSentV1(EventData):
    """The export file was delivered to the ERP dropzone."""

    draft_id: UUID
    erp_export_id: UUID
    export_storage_key: str
    remote_path: str
    checksum_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    attempts: int = Field(ge=1)
    sent_at: datetime


class ExportFailedV1(EventData):
    """Delivery gave up: a permanent error, or transient errors past the retry bound."""

    draft_id: UUID
    erp_export_id: UUID
    error_code: str
    error_message: str
    attempts: int = Field(ge=0)
    permanent: bool
    failed_at: datetime


class ExportDelayedV1(EventData):
    """A delivery attempt failed transiently; the export waits for the dropzone and is
    tried again at `next_attempt_at` (until `deliver_by`, then `export.failed`)."""

    draft_id: UUID
    erp_export_id: UUID
    connection_id: UUID | None = None
    reason: Literal["waiting_for_dropzone"] = "waiting_for_dropzone"
    error_code: str
    error_message: str
    attempts: int = Field(
        ge=0,
        description="Attempts made so far; 0 when the connection's circuit was already "
        "open, so the export waits without having been tried.",
    )
    next_attempt_at: datetime
    deliver_by: datetime | None = Field(
        default=None, description="The deadline: no attempt after it, the export fails."
    )
    delayed_at: datetime


class ExportCircuitChangedV1(EventData):
    """The delivery circuit of an ERP connection changed state: `open` after repeated
    transient failures (exports wait without spending attempts), `half_open` while one
    probe delivery runs, `closed` when a delivery succeeded."""

    connection_id: UUID
    org_id: str
    state: Literal["closed", "open", "half_open"]
    previous_state: Literal["closed", "open", "half_open"]
    since: datetime
    consecutive_failures: int = Field(ge=0)
    last_error_code: str | None = None
    next_probe_at: datetime | None = None
    changed_at: datetime


class ErpConnectionChangedV1(EventData):
    """An ERP connection was created, changed, activated or deactivated (no secrets)."""

    connection_id: UUID
    org_id: str
    name: str
    connector_type: Literal["sftp_dropzone", "local_dropzone"]
    is_active: bool
    change: Literal["created", "updated", "activated", "deactivated", "restated"] = Field(
        description="What happened; `restated` republishes a connection's current state "
        "(e.g. once after the topic's key changed from the org to the connection id)."
    )
    changed_at: datetime = Field(
        description="When export-service recorded the change (informational: consumers "
        "apply the records of one connection in the order the topic holds them)."
    )


@dataclass(frozen=True)
class EventSpec:
    """How one event type travels: its topic, CloudEvents type and audit action."""

    model: type[EventData]
    topic: Topic
    ce_type: str
    audit_action: str
    entity_type: str


EVENT_SPECS: tuple[EventSpec, ...] = (
    EventSpec(
        DraftCreatedV1,
        Topic.DRAFT_CREATED,
        "orderflow.draft.created.v1",
        "DRAFT_CREATED",
        "draft_order",
    ),
    EventSpec(
        DraftValidatedV1,
        Topic.DRAFT_VALIDATED,
        "orderflow.draft.validated.v1",
        "DRAFT_VALIDATED",
        "draft_order",
    ),
    EventSpec(
        DraftApprovedV1,
        Topic.DRAFT_APPROVED,
        "orderflow.draft.approved.v1",
        "DRAFT_APPROVED",
        "draft_order",
    ),
    EventSpec(
        DraftPushRequestedV1,
        Topic.DRAFT_PUSH_REQUESTED,
        "orderflow.draft.push_requested.v1",
        "DRAFT_PUSHED",
        "draft_order",
    ),
    EventSpec(
        ExportSentV1, Topic.EXPORT_SENT, "orderflow.export.sent.v1", "EXPORT_SENT", "draft_order"
    ),
    EventSpec(
        ExportFailedV1,
        Topic.EXPORT_FAILED,
        "orderflow.export.failed.v1",
        "EXPORT_FAILED",
        "draft_order",
    ),
    EventSpec(
        ExportDelayedV1,
        Topic.EXPORT_DELAYED,
        "orderflow.export.delayed.v1",
        "EXPORT_DELAYED",
        "draft_order",
    ),
    EventSpec(
        ExportCircuitChangedV1,
        Topic.EXPORT_CIRCUIT_CHANGED,
        "orderflow.export.circuit_changed.v1",
        "ERP_CONNECTION_CIRCUIT_CHANGED",
        "erp_connection",
    ),
    EventSpec(
        ErpConnectionChangedV1,
        Topic.ERP_CONNECTION_CHANGED,
        "orderflow.erp_connection.changed.v1",
        "ERP_CONNECTION_CHANGED",
        "erp_connection",
    ),
)
EVENT_TYPES: dict[str, EventSpec] = {spec.ce_type: spec for spec in EVENT_SPECS}
_BY_MODEL: dict[type[EventData], EventSpec] = {spec.model: spec for spec in EVENT_SPECS}

#: Audit action of a push that is a retry (same event type, `is_retry=True`).
RETRY_AUDIT_ACTION = "DRAFT_PUSH_RETRIED"
UNREADABLE_AUDIT_ACTION = "UNREADABLE_EVENT"
#: A readable event whose claims disagree (envelope org vs. payload org, topic vs. type,
#: source vs. the topic's producer); filed outside every organisation's chain.
UNTRUSTED_AUDIT_ACTION = "UNTRUSTED_EVENT"
AUDIT_ACTIONS: frozenset[str] = frozenset(
    {spec.audit_action for spec in EVENT_SPECS}
    | {RETRY_AUDIT_ACTION, UNREADABLE_AUDIT_ACTION, UNTRUSTED_AUDIT_ACTION}
)


def spec_for_type(ce_type: str) -> EventSpec:
    """The spec of a CloudEvents type; KeyError when the type is unknown."""
    return EVENT_TYPES[ce_type]


def spec_for_model(model: type[EventData]) -> EventSpec:
    return _BY_MODEL[model]


def audit_action_for(data: EventData) -> str:
    """The audit action an event stands for (a retried push has its own)."""
    if isinstance(data, DraftPushRequestedV1) and data.is_retry:
        return RETRY_AUDIT_ACTION
    return spec_for_model(type(data)).audit_action
