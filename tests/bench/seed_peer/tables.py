"""The peer's scratch tables (schema `seedpeer`), SQLAlchemy Core: created and dropped by
the benchmark, never touched by the services."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import UUID

from tests.bench.seed_peer.config import SCHEMA

metadata = MetaData(schema=SCHEMA)

draft_order = Table(
    "draft_order",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("org_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("external_ref", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("current_export_id", UUID(as_uuid=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

draft_order_line = Table(
    "draft_order_line",
    metadata,
    Column("draft_id", UUID(as_uuid=True), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("sku", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("quantity", Numeric, nullable=False),
    Column("unit", Text, nullable=False),
    Column("unit_price", Numeric, nullable=False),
    UniqueConstraint("draft_id", "line_no"),
)

push_attempt = Table(
    "push_attempt",
    metadata,
    Column("erp_export_id", UUID(as_uuid=True), primary_key=True),
    Column("draft_id", UUID(as_uuid=True), nullable=False),
    Column("org_id", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("requested_by_user_id", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    UniqueConstraint("draft_id", "attempt"),
)
