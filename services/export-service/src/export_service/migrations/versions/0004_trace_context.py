"""export schema: the W3C trace context of outbox rows and of exports

`outbox.trace_context` lets the relay continue the writer's trace on the Kafka record;
`erp_export.trace_context` keeps the push request's trace so the delivery worker (a
later process, maybe after a restart) continues it. Both nullable: rows written before
this carry none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from orderflow_shared.messaging.outbox import add_outbox_trace_context, drop_outbox_trace_context
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004_trace_context"
down_revision = "0003_connections_by_id"

SCHEMA = "export"


def upgrade() -> None:
    add_outbox_trace_context(op, SCHEMA)
    op.add_column("erp_export", sa.Column("trace_context", JSONB, nullable=True), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("erp_export", "trace_context", schema=SCHEMA)
    drop_outbox_trace_context(op, SCHEMA)
