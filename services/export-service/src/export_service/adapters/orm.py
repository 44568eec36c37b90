"""Tables of the `export` schema (SQLAlchemy Core), built on demand, never at import."""

from __future__ import annotations

from dataclasses import dataclass

from orderflow_shared.enum_check import enum_check
from orderflow_shared.messaging.inbox import inbox_table
from orderflow_shared.messaging.outbox import outbox_table
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from export_service.domain.circuit import CircuitState
from export_service.domain.connection import ConnectorType
from export_service.domain.export import ExportStatus

SCHEMA = "export"


@dataclass(frozen=True)
class Tables:
    metadata: MetaData
    erp_connection: Table
    erp_export: Table
    erp_connection_circuit: Table
    outbox: Table
    inbox: Table


def make_tables() -> Tables:
    metadata = MetaData(schema=SCHEMA)
    erp_connection = Table(
        "erp_connection",
        metadata,
        Column("id", UUID(as_uuid=True), primary_key=True),
        Column("org_id", Text, nullable=False),
        Column("name", Text, nullable=False),
        Column("connector_type", Text, nullable=False),
        Column("is_active", Boolean, nullable=False, server_default=text("false")),
        Column("config", JSONB, nullable=False),
        Column("secrets_ciphertext", Text, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        enum_check("connector_type", ConnectorType, name="ck_erp_connection_type"),
        Index("ix_erp_connection_org", "org_id"),
        Index(
            "uq_erp_connection_one_active_per_org",
            "org_id",
            unique=True,
            postgresql_where=text("is_active"),
        ),
    )
    erp_export = Table(
        "erp_export",
        metadata,
        Column("id", UUID(as_uuid=True), primary_key=True),
        Column("draft_order_id", UUID(as_uuid=True), nullable=False),
        Column("org_id", Text, nullable=False),
        Column("connection_id", UUID(as_uuid=True), nullable=True),
        Column("attempt_no", Integer, nullable=False, server_default=text("1")),
        Column("status", Text, nullable=False),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("next_attempt_at", DateTime(timezone=True), nullable=True),
        Column("file_format", Text, nullable=True),
        Column("file_name", Text, nullable=True),
        Column("export_storage_key", Text, nullable=True),
        Column("remote_path", Text, nullable=True),
        Column("checksum", Text, nullable=True),
        Column("size_bytes", BigInteger, nullable=True),
        Column("error_json", JSONB(none_as_null=True), nullable=True),
        Column("snapshot", JSONB, nullable=False),
        Column("lease_owner", Text, nullable=True),
        Column("lease_expires_at", DateTime(timezone=True), nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("sent_at", DateTime(timezone=True), nullable=True),
        Column("deliver_by", DateTime(timezone=True), nullable=True),
        # W3C trace context of the push request (migration 0004), continued on delivery
        Column("trace_context", JSONB, nullable=True),
        enum_check("status", ExportStatus, name="ck_erp_export_status"),
        Index("ix_erp_export_draft", "draft_order_id"),
        Index("ix_erp_export_org_created", "org_id", "created_at"),
        Index(
            "ix_erp_export_pending_due",
            "next_attempt_at",
            postgresql_where=text("status = 'PENDING'"),
        ),
        Index(
            "ix_erp_export_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'DELIVERING'"),
        ),
        Index(
            "ix_erp_export_pending_deadline",
            "deliver_by",
            postgresql_where=text("status = 'PENDING'"),
        ),
        Index(
            "ix_erp_export_pending_connection",
            "connection_id",
            "next_attempt_at",
            postgresql_where=text("status = 'PENDING'"),
        ),
    )
    erp_connection_circuit = make_circuit_table(metadata)
    return Tables(
        metadata=metadata,
        erp_connection=erp_connection,
        erp_export=erp_export,
        erp_connection_circuit=erp_connection_circuit,
        outbox=outbox_table(metadata, SCHEMA),
        inbox=inbox_table(metadata, SCHEMA),
    )


CIRCUIT_STATES = ("closed", "open", "half_open")


def make_circuit_table(metadata: MetaData) -> Table:
    """One row per connection whose deliveries have failed at least once."""
    return Table(
        "erp_connection_circuit",
        metadata,
        Column("connection_id", UUID(as_uuid=True), primary_key=True),
        Column("org_id", Text, nullable=False),
        Column("state", Text, nullable=False),
        Column("since", DateTime(timezone=True), nullable=False),
        Column("consecutive_failures", Integer, nullable=False, server_default=text("0")),
        Column("failed_probes", Integer, nullable=False, server_default=text("0")),
        Column("next_probe_at", DateTime(timezone=True), nullable=True),
        Column("probe_export_id", UUID(as_uuid=True), nullable=True),
        Column("probe_expires_at", DateTime(timezone=True), nullable=True),
        Column("last_error_code", Text, nullable=True),
        enum_check("state", CircuitState, name="ck_erp_connection_circuit_state"),
        Index("ix_erp_connection_circuit_org", "org_id"),
    )
