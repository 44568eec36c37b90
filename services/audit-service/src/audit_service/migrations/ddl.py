"""What audit's migrations share, written once: the runtime role they grant to, the
grant that applies only where that role exists, and the append-only trigger function.

Frozen like the migrations themselves: a change here changes what an old migration
does to a new database, so add a new helper rather than edit one.
"""

from __future__ import annotations

import re

from alembic import op


def runtime_role() -> str:
    """The role the service runs as (`runtime_role` of the Alembic config, default
    `audit_service`), checked to be a plain identifier before it goes into SQL."""
    config = op.get_context().config
    attributes = config.attributes if config is not None else {}
    role = str(attributes.get("runtime_role") or "audit_service")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError(f"unexpected runtime role name {role!r}")
    return role


def grant_to_runtime_role(*grants: str) -> None:
    """`GRANT <grant> TO <runtime role>` for each grant, when that role exists and is not
    the one migrating (a bare database, or one where the owner runs the service)."""
    role = runtime_role()  # a plain identifier, checked there
    statements = "\n".join(f'GRANT {grant} TO "{role}";' for grant in grants)
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}')
               AND current_user <> '{role}' THEN
                {statements}
            END IF;
        END
        $$
        """  # noqa: S608
    )


def create_refuse_audit_log_change(*, inside_prune: bool) -> None:
    """The trigger function that refuses every UPDATE, DELETE and TRUNCATE of
    `audit_log`; with `inside_prune` it lets a DELETE through while `audit.pruning` is
    set locally (only `prune_archived` sets it)."""
    let_prune_through = (
        """
            IF TG_OP = 'DELETE' AND current_setting('audit.pruning', true) = 'on' THEN
                RETURN OLD;
            END IF;"""
        if inside_prune
        else ""
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION audit.refuse_audit_log_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN{let_prune_through}
            RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
