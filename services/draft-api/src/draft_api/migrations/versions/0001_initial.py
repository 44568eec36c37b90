"""Drafts, lines, push attempts, idempotency keys, connector read model, outbox, inbox."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from orderflow_shared.messaging.inbox import create_inbox_table, drop_inbox_table
from orderflow_shared.messaging.outbox import create_outbox_table, drop_outbox_table
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001_initial"
down_revision = None

S = "draft"
TZ = sa.DateTime(timezone=True)


def _draft_id() -> sa.Column[object]:
    """The column that ties a line or a push attempt to its draft."""
    return sa.Column(
        "draft_id",
        UUID(as_uuid=True),
        sa.ForeignKey(f"{S}.draft_order.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "draft_order",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("external_ref", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("currency", sa.Text),
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column(
            "validation_issues", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")
        ),
        sa.Column("created_by_user_id", sa.Text, nullable=False),
        sa.Column("approved_by_user_id", sa.Text),
        sa.Column("approved_at", TZ),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("current_export_id", UUID(as_uuid=True)),
        sa.CheckConstraint(
            "status IN ('NEW', 'READY', 'NEEDS_REVIEW', 'APPROVED', 'PUSHING', 'PUSHED', 'ERROR')",
            name="ck_draft_order_status",
        ),
        schema=S,
    )
    op.create_index("ix_draft_order_org_created", "draft_order", ["org_id", "created_at"], schema=S)
    op.create_index("ix_draft_order_org_status", "draft_order", ["org_id", "status"], schema=S)
    op.create_index(
        "ix_draft_order_org_external_ref", "draft_order", ["org_id", "external_ref"], schema=S
    )
    op.create_table(
        "draft_order_line",
        _draft_id(),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("sku", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("quantity", sa.Numeric, nullable=False),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("unit_price", sa.Numeric, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("draft_id", "line_no", name="pk_draft_order_line"),
        schema=S,
    )
    op.create_table(
        "push_attempt",
        sa.Column("erp_export_id", UUID(as_uuid=True), primary_key=True),
        _draft_id(),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("error_json", JSONB),
        sa.Column("requested_by_user_id", sa.Text, nullable=False),
        sa.Column("requested_at", TZ, nullable=False),
        sa.Column("finished_at", TZ),
        sa.UniqueConstraint("draft_id", "attempt", name="uq_push_attempt_draft_attempt"),
        sa.CheckConstraint(
            "status IN ('in_progress', 'SENT', 'FAILED')", name="ck_push_attempt_status"
        ),
        schema=S,
    )
    op.create_table(
        "idempotency_key",
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("draft_id", UUID(as_uuid=True), nullable=False),
        sa.Column("request_fingerprint", sa.Text, nullable=False),
        sa.Column("erp_export_id", UUID(as_uuid=True), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("org_id", "key", name="uq_idempotency_key_org_key"),
        schema=S,
    )
    op.create_table(
        "erp_connector",
        sa.Column("connection_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("connector_type", sa.Text, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("changed_at", TZ, nullable=False),
        schema=S,
    )
    op.create_index("ix_draft_erp_connector_org_id", "erp_connector", ["org_id"], schema=S)
    create_outbox_table(op, S)
    create_inbox_table(op, S)


def downgrade() -> None:
    drop_inbox_table(op, S)
    drop_outbox_table(op, S)
    op.drop_table("erp_connector", schema=S)
    op.drop_table("idempotency_key", schema=S)
    op.drop_table("push_attempt", schema=S)
    op.drop_table("draft_order_line", schema=S)
    op.drop_table("draft_order", schema=S)
