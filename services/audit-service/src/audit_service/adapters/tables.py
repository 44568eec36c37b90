"""The audit schema as SQLAlchemy sees it (the migrations are the source of truth)."""

from __future__ import annotations

from typing import get_args

from orderflow_shared.enum_check import enum_check
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from audit_service.domain.checkpoint import Kind

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

retention_policies = Table(
    "retention_policies",
    metadata,
    Column("org_id", Text, primary_key=True),
    Column("retention_days", Integer, nullable=False),
    Column("updated_by", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("org_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("entry_id", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("signed_at", DateTime(timezone=True), nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("signature", Text, nullable=False),
    enum_check("kind", get_args(Kind), name="ck_checkpoint_kind"),
    UniqueConstraint("org_id", "kind", "seq", name="uq_checkpoint"),
    Index("ix_checkpoints_org_kind_seq", "org_id", "kind", "seq"),
)

archives = Table(
    "archives",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("org_id", Text, nullable=False),
    Column("period", String(7), nullable=False),
    Column("first_id", BigInteger, nullable=False),
    Column("last_id", BigInteger, nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("entry_count", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("pruned_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("org_id", "first_id", name="uq_archive_org_first"),
)
