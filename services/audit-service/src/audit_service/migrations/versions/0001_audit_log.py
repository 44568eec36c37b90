"""audit_log: append-only, hash-chained per org; the runtime role may only SELECT and INSERT"""

from __future__ import annotations

from alembic import op
from audit_service.migrations.ddl import create_refuse_audit_log_change, grant_to_runtime_role

revision = "0001_audit_log"
down_revision = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE audit.audit_log (
            id            bigserial PRIMARY KEY,
            event_id      uuid NOT NULL CONSTRAINT uq_audit_log_event_id UNIQUE,
            org_id        varchar(200) NOT NULL,
            action        varchar(64) NOT NULL,
            entity_type   varchar(64) NOT NULL,
            entity_id     text NOT NULL,
            actor_user_id text,
            occurred_at   timestamptz NOT NULL,
            created_at    timestamptz NOT NULL,
            recorded_at   timestamptz NOT NULL DEFAULT now(),
            source_topic  text NOT NULL,
            data          jsonb NOT NULL,
            prev_hash     varchar(64) NOT NULL,
            hash          varchar(64) NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX ix_audit_log_org_chain ON audit.audit_log (org_id, id)")
    op.execute("CREATE INDEX ix_audit_log_org_time ON audit.audit_log (org_id, occurred_at, id)")
    op.execute(
        "CREATE INDEX ix_audit_log_org_entity"
        " ON audit.audit_log (org_id, entity_id, occurred_at, id)"
    )
    # Defence in depth beyond the grants: not even the owner changes history by accident.
    create_refuse_audit_log_change(inside_prune=False)
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit.audit_log"
        " FOR EACH ROW EXECUTE FUNCTION audit.refuse_audit_log_change()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit.audit_log"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_audit_log_change()"
    )
    op.execute("REVOKE ALL ON audit.audit_log FROM PUBLIC")
    # The chain needs no UPDATE: the head of an org is read from the log itself.
    grant_to_runtime_role(
        "SELECT, INSERT ON audit.audit_log", "USAGE ON SEQUENCE audit.audit_log_id_seq"
    )


def downgrade() -> None:
    op.execute("DROP TABLE audit.audit_log")
    op.execute("DROP FUNCTION audit.refuse_audit_log_change()")
