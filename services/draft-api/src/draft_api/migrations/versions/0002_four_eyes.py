"""Four-eyes: each draft's last editor, and the per-organisation settings."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_four_eyes"
down_revision = "0002_outbox_trace_context"

S = "draft"


def upgrade() -> None:
    op.add_column("draft_order", sa.Column("last_edited_by_user_id", sa.Text), schema=S)
    op.create_table(
        "org_settings",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("four_eyes", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_by_user_id", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("org_settings", schema=S)
    op.drop_column("draft_order", "last_edited_by_user_id", schema=S)
