"""org_id is text: an org id longer than 200 characters must not stop the ingest"""

from __future__ import annotations

from alembic import op

revision = "0002_org_id_text"
down_revision = "0001_audit_log"


def upgrade() -> None:
    op.execute("ALTER TABLE audit.audit_log ALTER COLUMN org_id TYPE text")


def downgrade() -> None:
    # Rows with a longer org id would not fit back; refuse rather than truncate history.
    op.execute("ALTER TABLE audit.audit_log ALTER COLUMN org_id TYPE varchar(200)")
