"""retention and signed checkpoints: per-org policies, archives, checkpoints, pruning

- `retention_policies`: an org's own retention in days (none: AUDIT_RETENTION_DAYS).
- `checkpoints`: signed (Ed25519) chain positions, `head` (the newest entry then) or
  `anchor` (the newest entry retention pruned, to which the first kept entry links).
- `archives`: one row per archive file (org, period, the ids and chain positions it
  holds, its SHA-256), written before the rows it holds are deleted.
- `prune_archived(archive_id)`: the only way rows leave `audit_log`. SECURITY DEFINER
  (the owner's rights), so the runtime role still has no DELETE; it deletes exactly the
  archived rows, and only when they are the oldest of their org, all there, anchored by
  a checkpoint, and not the org's newest entry. The append-only trigger lets a DELETE
  through only inside it (`audit.pruning` set locally by the function).
"""

from __future__ import annotations

from alembic import op
from audit_service.migrations.ddl import create_refuse_audit_log_change, grant_to_runtime_role

revision = "0004_retention_checkpoints"
down_revision = "0003_producer"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE audit.retention_policies (
            org_id         text PRIMARY KEY,
            retention_days integer NOT NULL
                CONSTRAINT ck_retention_days CHECK (retention_days BETWEEN 1 AND 36500),
            updated_by     text,
            updated_at     timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE audit.checkpoints (
            id         bigserial PRIMARY KEY,
            org_id     text NOT NULL,
            kind       text NOT NULL CONSTRAINT ck_checkpoint_kind
                           CHECK (kind IN ('head', 'anchor')),
            seq        bigint NOT NULL CHECK (seq >= 1),
            entry_id   bigint NOT NULL,
            hash       varchar(64) NOT NULL,
            signed_at  timestamptz NOT NULL,
            key_id     varchar(16) NOT NULL,
            signature  text NOT NULL,
            CONSTRAINT uq_checkpoint UNIQUE (org_id, kind, seq)
        )
        """
    )
    op.execute("CREATE INDEX ix_checkpoints_org_kind_seq ON audit.checkpoints (org_id, kind, seq)")
    op.execute(
        """
        CREATE TABLE audit.archives (
            id          bigserial PRIMARY KEY,
            org_id      text NOT NULL,
            period      varchar(7) NOT NULL,
            first_id    bigint NOT NULL,
            last_id     bigint NOT NULL,
            first_seq   bigint NOT NULL,
            last_seq    bigint NOT NULL,
            entry_count integer NOT NULL CHECK (entry_count >= 1),
            path        text NOT NULL,
            sha256      varchar(64) NOT NULL,
            bytes       bigint NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            pruned_at   timestamptz,
            CONSTRAINT uq_archive_org_first UNIQUE (org_id, first_id)
        )
        """
    )
    # The trigger lets a DELETE through only inside prune_archived (which sets this).
    create_refuse_audit_log_change(inside_prune=True)
    op.execute(
        """
        CREATE FUNCTION audit.prune_archived(p_archive bigint) RETURNS bigint
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
        DECLARE
            a audit.archives%ROWTYPE;
            present bigint;
            deleted bigint;
        BEGIN
            SELECT * INTO a FROM audit.archives WHERE id = p_archive FOR UPDATE;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'no archive %', p_archive;
            END IF;
            IF a.pruned_at IS NOT NULL THEN
                RETURN 0;
            END IF;
            IF EXISTS (SELECT 1 FROM audit.audit_log
                       WHERE org_id = a.org_id AND id < a.first_id) THEN
                RAISE EXCEPTION 'archive % is not the oldest part of its org''s log', p_archive;
            END IF;
            SELECT count(*) INTO present FROM audit.audit_log
             WHERE org_id = a.org_id AND id BETWEEN a.first_id AND a.last_id;
            IF present <> a.entry_count THEN
                RAISE EXCEPTION 'archive % holds % entries, the log %', p_archive,
                    a.entry_count, present;
            END IF;
            IF NOT EXISTS (SELECT 1 FROM audit.audit_log
                           WHERE org_id = a.org_id AND id > a.last_id) THEN
                RAISE EXCEPTION 'archive % would prune its org''s newest entry', p_archive;
            END IF;
            IF NOT EXISTS (SELECT 1 FROM audit.checkpoints c JOIN audit.audit_log l
                             ON l.id = c.entry_id AND l.hash = c.hash
                           WHERE c.org_id = a.org_id AND c.kind = 'anchor'
                             AND c.seq = a.last_seq AND c.entry_id = a.last_id) THEN
                RAISE EXCEPTION 'archive % has no anchor checkpoint', p_archive;
            END IF;
            PERFORM set_config('audit.pruning', 'on', true);
            DELETE FROM audit.audit_log
             WHERE org_id = a.org_id AND id BETWEEN a.first_id AND a.last_id;
            GET DIAGNOSTICS deleted = ROW_COUNT;
            PERFORM set_config('audit.pruning', 'off', true);
            UPDATE audit.archives SET pruned_at = now() WHERE id = p_archive;
            RETURN deleted;
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION audit.prune_archived(bigint) FROM PUBLIC")
    for table in ("retention_policies", "checkpoints", "archives"):
        op.execute(f"REVOKE ALL ON audit.{table} FROM PUBLIC")
    grant_to_runtime_role(
        "SELECT, INSERT, UPDATE ON audit.retention_policies",
        "SELECT, INSERT ON audit.checkpoints",
        "USAGE ON SEQUENCE audit.checkpoints_id_seq",
        "SELECT, INSERT ON audit.archives",
        "USAGE ON SEQUENCE audit.archives_id_seq",
        "EXECUTE ON FUNCTION audit.prune_archived(bigint)",
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION audit.prune_archived(bigint)")
    create_refuse_audit_log_change(inside_prune=False)
    op.execute("DROP TABLE audit.archives")
    op.execute("DROP TABLE audit.checkpoints")
    op.execute("DROP TABLE audit.retention_policies")
