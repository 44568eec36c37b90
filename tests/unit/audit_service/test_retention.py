"""Retention and checkpoints, the pure parts: which entries go, archive lines, signatures,
and the verifier held to anchors and signed heads."""

from __future__ import annotations

import base64
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from audit_service.adapters.signing import (
    Signer,
    Verifier,
    generate_private_key,
    load_private_key,
)
from audit_service.domain.checkpoint import ChainPosition
from audit_service.domain.entry import AuditEntry, chain
from audit_service.domain.retention import (
    InvalidPolicy,
    LogRow,
    archive_lines,
    archive_name,
    checked_days,
    next_archive,
    org_directory,
    policy_for,
    read_archive,
)
from audit_service.domain.verification import ChainWalker, StoredEntry
from orderflow_devstack.config import StackConfig

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
SIGNER = Signer(load_private_key(generate_private_key()))


def _rows(times: list[datetime], org: str = "org-a") -> list[LogRow]:
    entries = [
        AuditEntry(
            event_id=uuid.uuid4(),
            org_id=org,
            action="DRAFT_CREATED",
            entity_type="draft_order",
            entity_id=f"d-{i}",
            actor_user_id="u-1",
            occurred_at=t,
            source_topic="draft.created",
            data={"i": i, "text": "Grüße"},
            producer="draft-api",
        )
        for i, t in enumerate(times)
    ]
    return [
        LogRow(
            id=10 + i,
            seq=i + 1,
            entry=c.entry,
            created_at=c.entry.occurred_at,
            recorded_at=c.entry.occurred_at + timedelta(seconds=1),
            prev_hash=c.prev_hash,
            hash=c.hash,
        )
        for i, c in enumerate(chain(entries, {}))
    ]


def _stored(rows: list[LogRow]) -> list[StoredEntry]:
    return [StoredEntry(id=r.id, entry=r.entry, prev_hash=r.prev_hash, hash=r.hash) for r in rows]


def test_the_next_archive_is_the_old_prefix_within_one_month_and_never_the_head() -> None:
    policy = policy_for("org-a", None, 365)
    cutoff = policy.cutoff(NOW)
    old_march = datetime(2025, 3, 5, tzinfo=UTC)
    old_april = datetime(2025, 4, 2, tzinfo=UTC)
    young = NOW - timedelta(days=3)
    rows = _rows([old_march, old_march, old_april, young, old_march, young])
    first = next_archive(rows, cutoff, head_id=rows[-1].id)
    assert [r.seq for r in first] == [1, 2]  # March only
    second = next_archive(rows[2:], cutoff, head_id=rows[-1].id)
    assert [r.seq for r in second] == [3]  # stops at the young entry
    assert next_archive(rows[3:], cutoff, head_id=rows[-1].id) == []
    only_old = _rows([old_march, old_march])
    assert [r.seq for r in next_archive(only_old, cutoff, head_id=only_old[-1].id)] == [1]


def test_an_org_policy_overrides_the_default_and_days_are_bounded() -> None:
    assert policy_for("o", 30, 365).days == 30
    assert policy_for("o", 30, 365).source == "org"
    assert policy_for("o", None, 365).source == "default"
    assert policy_for("o", None, 365).cutoff(NOW) == NOW - timedelta(days=365)
    assert checked_days(1) == 1
    for bad in (0, -1, 36501, True):
        with pytest.raises(InvalidPolicy):
            checked_days(bad)


def test_archive_lines_read_back_as_the_same_rows() -> None:
    rows = _rows([datetime(2025, 3, 5, 1, 2, 3, 456789, tzinfo=UTC)] * 3)
    content = archive_lines(rows)
    assert content.count(b"\n") == 3
    assert read_archive(content) == rows
    assert archive_name(rows).endswith("/2025-03/000000000001-000000000003.jsonl")


def test_org_directories_are_safe_and_distinct() -> None:
    names = {org_directory(o) for o in ("acme", "ACME", "../etc", "a/b", "a_b", "")}
    assert len(names) == 6
    for name in names:
        assert "/" not in name and not name.startswith(".")


def test_a_checkpoint_verifies_only_unchanged_and_with_a_trusted_key() -> None:
    checkpoint = SIGNER.sign(ChainPosition("org-a", 7, 42, "ab" * 32), "head", NOW)
    verifier = Verifier([SIGNER.public_key])
    assert verifier.valid(checkpoint)
    assert not verifier.valid(replace(checkpoint, seq=8))
    assert not verifier.valid(replace(checkpoint, hash="cd" * 32))
    assert not verifier.valid(replace(checkpoint, kind="anchor"))
    assert not verifier.valid(replace(checkpoint, signature="not base64!"))
    other = Signer(load_private_key(generate_private_key()))
    assert not Verifier([other.public_key]).valid(checkpoint)
    assert "key" not in repr(SIGNER).replace("key_id", "")


def _walk(rows: list[StoredEntry], **kwargs) -> object:  # type: ignore[no-untyped-def]
    walker = ChainWalker("org-a", **kwargs)
    walker.feed(rows)
    return walker.report()


def test_a_pruned_chain_verifies_from_its_signed_anchor() -> None:
    rows = _rows([NOW] * 6)
    anchor = SIGNER.sign(ChainPosition("org-a", 2, rows[1].id, rows[1].hash), "anchor", NOW)
    head = SIGNER.sign(ChainPosition("org-a", 6, rows[5].id, rows[5].hash), "head", NOW)
    report = _walk(_stored(rows[2:]), anchors=[anchor], heads=[head])
    assert report.ok, report
    assert (report.entries_checked, report.anchor_seq, report.last_seq) == (4, 2, 6)
    # without the anchor, the first kept entry links to nothing
    assert not _walk(_stored(rows[2:]), heads=[head]).ok
    # deleting the first kept entry too is not covered by the anchor
    assert not _walk(_stored(rows[3:]), anchors=[anchor], heads=[head]).ok


def test_truncating_the_newest_entries_is_caught_by_the_signed_head() -> None:
    rows = _rows([NOW] * 5)
    head = SIGNER.sign(ChainPosition("org-a", 5, rows[4].id, rows[4].hash), "head", NOW)
    assert _walk(_stored(rows[:3])).ok  # the chain alone cannot tell
    report = _walk(_stored(rows[:3]), heads=[head])
    assert not report.ok
    assert report.first_broken is not None
    assert "deleted from the end" in report.first_broken.reason
    assert report.first_broken.id == rows[4].id
    assert not _walk([], heads=[head]).ok


def test_a_rewritten_chain_is_caught_by_the_signed_head() -> None:
    rows = _rows([NOW] * 4)
    head = SIGNER.sign(ChainPosition("org-a", 4, rows[3].id, rows[3].hash), "head", NOW)
    forged_entries = [replace(r.entry, data={"forged": True}) for r in rows]
    forged = [
        StoredEntry(id=r.id, entry=c.entry, prev_hash=c.prev_hash, hash=c.hash)
        for r, c in zip(rows, chain(forged_entries, {}), strict=True)
    ]
    assert _walk(forged).ok
    report = _walk(forged, heads=[head])
    assert not report.ok
    assert report.first_broken is not None and "rewritten" in report.first_broken.reason


def test_the_devstack_gives_each_stack_its_own_signing_key_and_archive_dir(
    tmp_path: Path,
) -> None:
    env = StackConfig.from_env(state_dir=tmp_path / "a").service_env("audit-service")
    other = StackConfig.from_env(state_dir=tmp_path / "b").service_env("audit-service")
    assert env["AUDIT_ARCHIVE_DIR"] == str(tmp_path / "a" / "audit-archive")
    assert len(base64.b64decode(env["AUDIT_SIGNING_KEY"])) == 32
    assert Signer(load_private_key(env["AUDIT_SIGNING_KEY"])).key_id
    assert env["AUDIT_SIGNING_KEY"] != other["AUDIT_SIGNING_KEY"]
    assert "AUDIT_SIGNING_KEY" not in StackConfig.from_env(state_dir=tmp_path / "a").service_env(
        "draft-api"
    )
