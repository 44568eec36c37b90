"""export schema: delivery deadline of exports, delivery circuit of connections"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0002_deadline_circuit"
down_revision = "0001"

SCHEMA = "export"


def upgrade() -> None:
    op.add_column(
        "erp_export",
        sa.Column("deliver_by", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    # exports that were waiting when this ran get the default deadline (24 h)
    op.execute(
        "UPDATE export.erp_export SET deliver_by = created_at + interval '24 hours'"
        " WHERE status IN ('PENDING', 'DELIVERING')"
    )
    # pending exports by deadline (expiry) and by connection (the circuit's probe)
    pending = sa.text("status = 'PENDING'")
    for name, columns in (
        ("ix_erp_export_pending_deadline", ["deliver_by"]),
        ("ix_erp_export_pending_connection", ["connection_id", "next_attempt_at"]),
    ):
        op.create_index(name, "erp_export", columns, postgresql_where=pending, schema=SCHEMA)
    op.create_table(
        "erp_connection_circuit",
        sa.Column("connection_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("failed_probes", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_probe_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("probe_export_id", UUID(as_uuid=True), nullable=True),
        sa.Column("probe_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error_code", sa.Text, nullable=True),
        sa.CheckConstraint(
            "state IN ('closed', 'open', 'half_open')", name="ck_erp_connection_circuit_state"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_erp_connection_circuit_org", "erp_connection_circuit", ["org_id"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_table("erp_connection_circuit", schema=SCHEMA)
    op.drop_index("ix_erp_export_pending_connection", "erp_export", schema=SCHEMA)
    op.drop_index("ix_erp_export_pending_deadline", "erp_export", schema=SCHEMA)
    op.drop_column("erp_export", "deliver_by", schema=SCHEMA)
