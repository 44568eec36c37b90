"""producer: the service whose Kafka principal alone may write the entry's topic

Nullable: entries recorded before are left as they are (their hashes do not cover a
producer, and the chain must still verify), as are UNREADABLE_EVENT entries of records
on the dead-letter topic (every consumer writes there).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_producer"
down_revision = "0002_org_id_text"


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("producer", sa.Text, nullable=True), schema="audit")


def downgrade() -> None:
    op.drop_column("audit_log", "producer", schema="audit")
