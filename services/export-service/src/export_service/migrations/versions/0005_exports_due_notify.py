"""export schema: a new export wakes the delivery workers (NOTIFY in its own transaction)

A statement-level trigger on `erp_export` INSERT sends `NOTIFY export_exports_due`,
delivered at the commit that recorded the exports (several in one transaction are one
notification). The `worker` processes LISTEN on that channel (bootstrap
EXPORTS_DUE_CHANNEL); the `consume` role no longer sends the NOTIFY itself from a
connection of its own after each batch.
"""

from __future__ import annotations

from alembic import op

revision = "0005_exports_due_notify"
down_revision = "0004_trace_context"

SCHEMA = "export"
#: repositories.EXPORTS_DUE_CHANNEL (a migration does not import the service's code)
CHANNEL = "export_exports_due"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION {SCHEMA}.notify_exports_due() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER erp_export_notify_due AFTER INSERT ON {SCHEMA}.erp_export
        FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.notify_exports_due()
        """
    )


def downgrade() -> None:
    op.execute(f"DROP TRIGGER IF EXISTS erp_export_notify_due ON {SCHEMA}.erp_export")
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.notify_exports_due()")
