"""The audit schema as SQLAlchemy sees it (the migrations are the source of truth)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

SCHEMA = "audit"

metadata = MetaData(schema=SCHEMA)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("org_id", Text, nullable=False),
    Column("action", String(64), nullable=False),
    Column("entity_type", String(64), nullable=False),
    Column("entity_id", Text, nullable=False),
    Column("actor_user_id", Text, nullable=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("source_topic", Text, nullable=False),
    Column("producer", Text, nullable=True),
    Column("data", JSONB, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_org_chain", "org_id", "id"),
    Index("ix_audit_log_org_time", "org_id", "occurred_at", "id"),
    Index("ix_audit_log_org_entity", "org_id", "entity_id", "occurred_at", "id"),
)
