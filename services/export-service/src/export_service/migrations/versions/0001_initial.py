"""export schema: erp_connection, erp_export, outbox, inbox"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from orderflow_shared.messaging.inbox import create_inbox_table, drop_inbox_table
from orderflow_shared.messaging.outbox import create_outbox_table, drop_outbox_table
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None

SCHEMA = "export"


def upgrade() -> None:
    op.create_table(
        "erp_connection",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("connector_type", sa.Text, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("config", JSONB, nullable=False),
        sa.Column("secrets_ciphertext", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "connector_type IN ('sftp_dropzone', 'local_dropzone')",
            name="ck_erp_connection_type",
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_erp_connection_org", "erp_connection", ["org_id"], schema=SCHEMA)
    op.create_index(
        "uq_erp_connection_one_active_per_org",
        "erp_connection",
        ["org_id"],
        unique=True,
        postgresql_where=sa.text("is_active"),
        schema=SCHEMA,
    )
    op.create_table(
        "erp_export",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("draft_order_id", UUID(as_uuid=True), nullable=False),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("connection_id", UUID(as_uuid=True), nullable=True),
        sa.Column("attempt_no", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("file_format", sa.Text, nullable=True),
        sa.Column("file_name", sa.Text, nullable=True),
        sa.Column("export_storage_key", sa.Text, nullable=True),
        sa.Column("remote_path", sa.Text, nullable=True),
        sa.Column("checksum", sa.Text, nullable=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=True),
        sa.Column("error_json", JSONB, nullable=True),
        sa.Column("snapshot", JSONB, nullable=False),
        sa.Column("lease_owner", sa.Text, nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('PENDING', 'DELIVERING', 'SENT', 'FAILED')", name="ck_erp_export_status"
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_erp_export_draft", "erp_export", ["draft_order_id"], schema=SCHEMA)
    op.create_index(
        "ix_erp_export_org_created", "erp_export", ["org_id", "created_at"], schema=SCHEMA
    )
    # the workers' two scans: exports due for a try, and leases that may have run out
    for name, column, status in (
        ("ix_erp_export_pending_due", "next_attempt_at", "PENDING"),
        ("ix_erp_export_lease", "lease_expires_at", "DELIVERING"),
    ):
        op.create_index(
            name,
            "erp_export",
            [column],
            postgresql_where=sa.text(f"status = '{status}'"),
            schema=SCHEMA,
        )
    create_outbox_table(op, SCHEMA)
    create_inbox_table(op, SCHEMA)


def downgrade() -> None:
    drop_inbox_table(op, SCHEMA)
    drop_outbox_table(op, SCHEMA)
    op.drop_table("erp_export", schema=SCHEMA)
    op.drop_table("erp_connection", schema=SCHEMA)
