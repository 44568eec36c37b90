"""Alembic stairway: upgrade, downgrade and upgrade again, in a database of its own."""

from __future__ import annotations

from typing import Any

from alembic.script import ScriptDirectory
from draft_api.entrypoints.cli import MIGRATIONS, downgrade, migrate


def head(settings: Any) -> str:
    """The one head revision (two would make `migrate` fail)."""
    script = ScriptDirectory.from_config(MIGRATIONS.config(settings))
    (only,) = script.get_heads()
    return str(only)


def tables(db: Any) -> set[str]:
    rows = db.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'draft'")
    return {name for (name,) in rows}


EXPECTED = {
    "alembic_version",
    "draft_order",
    "draft_order_line",
    "push_attempt",
    "idempotency_key",
    "erp_connector",
    "outbox",
    "inbox",
    "org_settings",
}


def test_upgrade_downgrade_upgrade_leaves_the_full_schema(db: Any, make_settings: Any) -> None:
    settings = make_settings(db)
    assert tables(db) == EXPECTED
    assert db.scalar("SELECT version_num FROM draft.alembic_version") == head(settings)

    downgrade(settings, "base")
    assert tables(db) == {"alembic_version"}

    migrate(settings)
    assert tables(db) == EXPECTED
    migrate(settings)  # at head already: a no-op, not an error
    assert db.scalar("SELECT count(*) FROM draft.alembic_version") == 1


def test_status_is_plain_text_that_an_operator_can_set_by_hand(db: Any) -> None:
    db.rows(
        "INSERT INTO draft.draft_order (id, org_id, customer_id, status, created_by_user_id) "
        "VALUES (gen_random_uuid(), 'o', 'c', 'PUSHING', 'u')"
    )
    db.rows("UPDATE draft.draft_order SET status = 'ERROR' WHERE org_id = 'o'")
    assert db.scalar("SELECT status FROM draft.draft_order WHERE org_id = 'o'") == "ERROR"
