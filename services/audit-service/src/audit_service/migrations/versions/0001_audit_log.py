"""audit_log: append-only, hash-chained per org; the runtime role may only SELECT and INSERT

Revision ID: 0001_audit_log
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import re

from alembic import op

revision = "0001_audit_log"
down_revision = None
branch_labels = None
depends_on = None


def _runtime_role() -> str:
    config = op.get_context().config
    attributes = config.attributes if config is not None else {}
    role = str(attributes.get("runtime_role") or "audit_service")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError(f"unexpected runtime role name {role!r}")
    return role


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
    op.execute(
        """
        CREATE FUNCTION audit.refuse_audit_log_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit.audit_log"
        " FOR EACH ROW EXECUTE FUNCTION audit.refuse_audit_log_change()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit.audit_log"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_audit_log_change()"
    )
    op.execute("REVOKE ALL ON audit.audit_log FROM PUBLIC")
    role = _runtime_role()  # a plain identifier, checked above
    # The chain needs no UPDATE: the head of an org is read from the log itself.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}')
               AND current_user <> '{role}' THEN
                GRANT SELECT, INSERT ON audit.audit_log TO "{role}";
                GRANT USAGE ON SEQUENCE audit.audit_log_id_seq TO "{role}";
            END IF;
        END
        $$
        """  # noqa: S608
    )


def downgrade() -> None:
    op.execute("DROP TABLE audit.audit_log")
    op.execute("DROP FUNCTION audit.refuse_audit_log_change()")
