"""Alembic stairway: every migration upgrades, downgrades and upgrades again."""

from __future__ import annotations

import uuid

from alembic import command
from alembic.script import ScriptDirectory
from audit_service.entrypoints.cli import MIGRATIONS

from .conftest import AuditDb


def test_stairway_up_down_up_with_the_version_table_in_schema_audit(servers):
    db = AuditDb(f"audit_it_stairway_{uuid.uuid4().hex[:8]}", servers)
    db.create()
    try:
        config = MIGRATIONS.config(db.settings())
        revisions = list(ScriptDirectory.from_config(config).walk_revisions("base", "heads"))
        for revision in reversed(revisions):
            command.upgrade(config, revision.revision)
            command.downgrade(config, revision.down_revision or "base")
            command.upgrade(config, revision.revision)
        version = db.rows("SELECT version_num FROM audit.alembic_version")
        assert version == [(revisions[0].revision,)]
        tables = db.rows(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'audit'"
            " ORDER BY table_name"
        )
        assert tables == [
            ("alembic_version",),
            ("archives",),
            ("audit_log",),
            ("checkpoints",),
            ("retention_policies",),
        ]
        command.downgrade(config, "base")
        assert db.rows("SELECT to_regclass('audit.audit_log')") == [(None,)]
    finally:
        db.drop()
