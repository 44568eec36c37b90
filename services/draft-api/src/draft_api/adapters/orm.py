"""Tables of schema `draft` (SQLAlchemy Core), shared with the Alembic migrations."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from orderflow_shared.enum_check import enum_check
from orderflow_shared.messaging.inbox import inbox_table
from orderflow_shared.messaging.outbox import outbox_table
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from draft_api.domain.model import DraftStatus, ExportStatus

SCHEMA = "draft"


@dataclass(frozen=True)
class Tables:
    metadata: MetaData
    draft_order: Table
    draft_order_line: Table
    push_attempt: Table
    idempotency_key: Table
    erp_connector: Table
    org_settings: Table
    outbox: Table
    inbox: Table


def build_tables() -> Tables:
    """Fresh metadata with every table of the schema (called by the wiring, not on import)."""
    md = MetaData(schema=SCHEMA)
    draft_order = Table(
        "draft_order",
        md,
        Column("id", UUID(as_uuid=True), primary_key=True),
        Column("org_id", Text, nullable=False),
        Column("customer_id", Text, nullable=False),
        Column("external_ref", Text),
        Column("status", Text, nullable=False),
        Column("currency", Text),
        Column("version", Integer, nullable=False, server_default=text("0")),
        Column("validation_issues", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("created_by_user_id", Text, nullable=False),
        Column("approved_by_user_id", Text),
        Column("approved_at", DateTime(timezone=True)),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("current_export_id", UUID(as_uuid=True)),
        Column("last_edited_by_user_id", Text),
        enum_check("status", DraftStatus, name="ck_draft_order_status"),
        Index("ix_draft_order_org_created", "org_id", "created_at"),
        Index("ix_draft_order_org_status", "org_id", "status"),
        Index("ix_draft_order_org_external_ref", "org_id", "external_ref"),
    )
    draft_order_line = Table(
        "draft_order_line",
        md,
        _draft_id(),
        Column("line_no", Integer, nullable=False),
        Column("sku", Text, nullable=False),
        Column("description", Text, nullable=False),
        Column("quantity", Numeric, nullable=False),
        Column("unit", Text, nullable=False),
        Column("unit_price", Numeric, nullable=False),
        Column("currency", Text, nullable=False),
        PrimaryKeyConstraint("draft_id", "line_no", name="pk_draft_order_line"),
    )
    push_attempt = Table(
        "push_attempt",
        md,
        Column("erp_export_id", UUID(as_uuid=True), primary_key=True),
        _draft_id(),
        Column("org_id", Text, nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("status", Text, nullable=False),
        Column("error_json", JSONB),
        Column("requested_by_user_id", Text, nullable=False),
        Column("requested_at", DateTime(timezone=True), nullable=False),
        Column("finished_at", DateTime(timezone=True)),
        UniqueConstraint("draft_id", "attempt", name="uq_push_attempt_draft_attempt"),
        enum_check("status", ExportStatus, name="ck_push_attempt_status"),
    )
    idempotency_key = Table(
        "idempotency_key",
        md,
        Column("org_id", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("operation", Text, nullable=False),
        Column("draft_id", UUID(as_uuid=True), nullable=False),
        Column("request_fingerprint", Text, nullable=False),
        Column("erp_export_id", UUID(as_uuid=True), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("org_id", "key", name="uq_idempotency_key_org_key"),
    )
    erp_connector = Table(
        "erp_connector",
        md,
        Column("connection_id", UUID(as_uuid=True), primary_key=True),
        Column("org_id", Text, nullable=False),
        Column("name", Text, nullable=False),
        Column("connector_type", Text, nullable=False),
        Column("is_active", Boolean, nullable=False),
        Column("changed_at", DateTime(timezone=True), nullable=False),
        Index("ix_draft_erp_connector_org_id", "org_id"),
    )
    org_settings = Table(
        "org_settings",
        md,
        Column("org_id", Text, primary_key=True),
        Column("four_eyes", Boolean, nullable=False, server_default=text("false")),
        Column("updated_by_user_id", Text),
        Column("updated_at", DateTime(timezone=True)),
    )
    return Tables(
        metadata=md,
        draft_order=draft_order,
        draft_order_line=draft_order_line,
        push_attempt=push_attempt,
        idempotency_key=idempotency_key,
        erp_connector=erp_connector,
        org_settings=org_settings,
        outbox=outbox_table(md, SCHEMA),
        inbox=inbox_table(md, SCHEMA),
    )


def _draft_id() -> Column[uuid.UUID]:
    """The column of a draft's child row: its draft (the rows go with the draft)."""
    return Column(
        "draft_id",
        UUID(as_uuid=True),
        ForeignKey(f"{SCHEMA}.draft_order.id", ondelete="CASCADE"),
        nullable=False,
    )
