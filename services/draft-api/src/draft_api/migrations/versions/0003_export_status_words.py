"""One export status vocabulary: a push attempt's `in_progress` becomes `PENDING`, the
word export-service uses (PENDING, DELIVERING, SENT, FAILED).

The check constraint lists the values as written here; tests compare them with
`orderflow_shared.contracts.export_status.ExportStatus` (tests/unit/shared/test_status_words.py
and the migrated database in tests/integration/draft_api/test_migrations_match_models.py).
"""

from __future__ import annotations

from alembic import op

revision = "0003_export_status_words"
down_revision = "0002_four_eyes"

S = "draft"


def upgrade() -> None:
    op.drop_constraint("ck_push_attempt_status", "push_attempt", schema=S, type_="check")
    op.execute("UPDATE draft.push_attempt SET status = 'PENDING' WHERE status = 'in_progress'")
    op.create_check_constraint(
        "ck_push_attempt_status",
        "push_attempt",
        "status IN ('PENDING', 'DELIVERING', 'SENT', 'FAILED')",
        schema=S,
    )


def downgrade() -> None:
    op.drop_constraint("ck_push_attempt_status", "push_attempt", schema=S, type_="check")
    op.execute(
        "UPDATE draft.push_attempt SET status = 'in_progress' "
        "WHERE status IN ('PENDING', 'DELIVERING')"
    )
    op.create_check_constraint(
        "ck_push_attempt_status",
        "push_attempt",
        "status IN ('in_progress', 'SENT', 'FAILED')",
        schema=S,
    )
