"""restate every ERP connection on erp_connection.changed, keyed by its id

`erp_connection.changed` was keyed by the org, so compaction kept one connection's
latest record per org. From now on records are keyed by the connection id. This
migration queues one `restated` event per existing connection in the outbox (the
relay publishes it), so the compacted topic holds every connection's current state
under its own key; the old org-keyed records become harmless (draft-api lets them
fill in only a connection it does not know yet). Runs once per database, in
`make up`'s migrate step.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from orderflow_shared.contracts import ErpConnectionChangedV1, Topic
from orderflow_shared.contracts.services import Service, source_for, system_actor
from orderflow_shared.messaging.envelope import Envelope
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0003_connections_by_id"
down_revision = "0002_deadline_circuit"

SOURCE = source_for(Service.EXPORT_SERVICE)
ACTOR = system_actor(Service.EXPORT_SERVICE)


def upgrade() -> None:
    bind = op.get_bind()
    connections = bind.execute(
        sa.text(
            "SELECT id AS connection_id, org_id, name, connector_type, is_active,"
            " updated_at AS changed_at FROM export.erp_connection ORDER BY created_at, id"
        )
    ).all()
    outbox = sa.table(
        "outbox",
        sa.column("event_id", UUID(as_uuid=True)),
        sa.column("topic", sa.Text),
        sa.column("key", sa.Text),
        sa.column("headers", JSONB),
        sa.column("payload", sa.LargeBinary),
        schema="export",
    )
    rows = []
    for c in connections:
        key = str(c.connection_id)
        envelope = Envelope.wrap(
            ErpConnectionChangedV1(change="restated", **c._mapping),
            source=SOURCE,
            subject=key,
            org_id=c.org_id,
            actor_id=ACTOR,
            key=key,
        )
        rows.append(
            {
                "event_id": envelope.id,
                "topic": str(Topic.ERP_CONNECTION_CHANGED),
                "key": envelope.key,
                "headers": [[name, value.decode()] for name, value in envelope.kafka_headers()],
                "payload": envelope.data,
            }
        )
    if rows:
        bind.execute(outbox.insert(), rows)


def downgrade() -> None:
    # The restatement events are facts already published; nothing to undo.
    pass
