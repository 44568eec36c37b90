"""A push whose export waits for the dropzone stays PUSHING and shows why."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from draft_api.domain.model import Actor, DraftOrder, DraftStatus, ExportStatus, NewLine

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
USER = Actor(user_id="user-1", org_id="org-a")
WAITING = {
    "waiting_for_dropzone": True,
    "error_code": "connection_refused",
    "next_attempt_at": "2026-03-01T12:00:05+00:00",
}


def pushing() -> tuple[DraftOrder, uuid.UUID]:
    draft = DraftOrder.create(
        draft_id=uuid.uuid4(),
        actor=USER,
        customer_id="C-1001",
        external_ref="PO-4711",
        lines=[NewLine("SKU-1", "Widget", Decimal("3"), "EA", Decimal("9.50"), "EUR")],
        now=NOW,
    )
    draft.validate(actor=USER, external_ref_taken=False, now=NOW)
    draft.approve(actor=USER, now=NOW)
    export_id = uuid.uuid4()
    draft.push(actor=USER, export_id=export_id, has_active_connector=True, now=NOW)
    return draft, export_id


def test_a_delayed_export_shows_its_wait_on_the_attempt_and_the_draft_stays_pushing():
    draft, export_id = pushing()
    assert draft.export_delayed(export_id, waiting=WAITING) is True
    attempt = draft.attempt_for(export_id)
    assert attempt is not None and attempt.status is ExportStatus.PENDING
    assert attempt.error == WAITING and attempt.finished_at is None
    assert draft.status is DraftStatus.PUSHING


def test_the_result_replaces_the_wait_and_a_late_delay_does_not_overwrite_it():
    draft, export_id = pushing()
    draft.export_delayed(export_id, waiting=WAITING)
    assert draft.export_sent(export_id, now=NOW) is True
    assert draft.export_delayed(export_id, waiting=WAITING) is False
    attempt = draft.attempt_for(export_id)
    assert attempt is not None and attempt.status is ExportStatus.SENT and attempt.error is None
    assert draft.status is DraftStatus.PUSHED


def test_a_delay_of_an_unknown_export_changes_nothing():
    draft, _ = pushing()
    assert draft.export_delayed(uuid.uuid4(), waiting=WAITING) is False
