"""Alembic stairway: every revision upgrades, downgrades and upgrades again."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from export_service.entrypoints.cli import MIGRATIONS, downgrade, migrate
from sqlalchemy import create_engine, text

from .conftest import make_settings

pytestmark = pytest.mark.usefixtures("exclusive")


def _tables(url: str) -> set[str]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'export'")
        )
        names = {row[0] for row in found}
    engine.dispose()
    return names


def test_every_migration_goes_up_down_and_up_again(infra, export_env):
    settings = make_settings(export_env)
    script = ScriptDirectory.from_config(MIGRATIONS.config(settings))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert revisions and MIGRATIONS.directory.is_dir()
    downgrade(settings, "base")
    assert _tables(infra.superuser_dsn) == {"alembic_version"}
    for revision in revisions:
        migrate(settings, revision)
        downgrade(settings, "-1")
        migrate(settings, revision)
    assert _tables(infra.superuser_dsn) == {
        "alembic_version",
        "erp_connection",
        "erp_export",
        "erp_connection_circuit",
        "outbox",
        "inbox",
    }
