"""The inbox in one place: every service claims and purges its inbox through
orderflow_shared.messaging.inbox, none writes its own INSERT or DELETE on it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SHARED_INBOX = ROOT / "shared/src/orderflow_shared/messaging/inbox.py"
#: a statement on an inbox table written by hand: delete(...inbox), insert(...inbox),
#: or SQL text naming it
BY_HAND = re.compile(
    r"(delete|insert)\(\s*[\w.]*inbox\b|(DELETE\s+FROM|INSERT\s+INTO)\s+[\w.\"{}]*inbox",
    re.IGNORECASE,
)


def service_modules() -> list[Path]:
    return [
        path
        for source in [*ROOT.glob("services/*/src"), ROOT / "shared/src"]
        for path in sorted(source.rglob("*.py"))
        if path != SHARED_INBOX
    ]


def test_the_pattern_finds_a_hand_written_claim_or_purge() -> None:
    assert BY_HAND.search("await conn.execute(delete(tables.inbox).where(x))")
    assert BY_HAND.search("statement = insert(self._tables.inbox)")
    assert BY_HAND.search('"DELETE FROM export.inbox WHERE applied_at < %s"')
    assert not BY_HAND.search("await purge_inbox(engine, tables.inbox, older_than=cutoff)")


def test_no_service_claims_or_purges_its_inbox_by_hand() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in service_modules()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if BY_HAND.search(line)
    ]
    assert found == []
