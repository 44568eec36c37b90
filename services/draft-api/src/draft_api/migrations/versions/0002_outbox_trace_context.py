"""draft schema: the W3C trace context of outbox rows

The relay publishes a row with a trace context under a span that continues it, so the
consumers of `draft.push_requested` continue the push request's trace. Nullable: rows
written before this carry none.
"""

from __future__ import annotations

from alembic import op
from orderflow_shared.messaging.outbox import add_outbox_trace_context, drop_outbox_trace_context

revision = "0002_outbox_trace_context"
down_revision = "0001_initial"

SCHEMA = "draft"


def upgrade() -> None:
    add_outbox_trace_context(op, SCHEMA)


def downgrade() -> None:
    drop_outbox_trace_context(op, SCHEMA)
