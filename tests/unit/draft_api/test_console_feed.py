"""The console feed's fan-out: an update reaches only its own organisation's pages, and
records that are not what their topic's producer writes are dropped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from draft_api.console.feed import Feed, update_of
from orderflow_shared.messaging.envelope import Envelope


def envelope(topic: str, data: bytes, *, org: str = "org-a", source: str = "") -> Envelope:
    producer = "export-service" if topic.startswith("export.") else "draft-api"
    return Envelope(
        id=uuid.uuid4(),
        type=f"orderflow.{topic}.v1",
        source=source or f"/orderflow/{producer}",
        subject="d-1",
        time=datetime.now(UTC),
        org_id=org,
        actor_id="user-1",
        data=data,
        key="d-1",
        record_topic=topic,
    )


def test_each_topic_becomes_the_status_the_page_shows() -> None:
    draft = str(uuid.uuid4())
    sent = update_of(envelope("export.sent", f'{{"draft_id": "{draft}"}}'.encode()))
    assert sent is not None and sent["status"] == "PUSHED" and sent["draft_id"] == draft
    failed = update_of(
        envelope(
            "export.failed",
            f'{{"draft_id": "{draft}", "error_code": "sftp_unreachable",'
            f' "error_message": "connection refused"}}'.encode(),
        )
    )
    assert failed is not None and failed["status"] == "ERROR"
    assert failed["reason"] == "sftp_unreachable: connection refused"
    validated = update_of(
        envelope("draft.validated", f'{{"draft_id": "{draft}", "status": "READY"}}'.encode())
    )
    assert validated is not None and validated["status"] == "READY"


def test_a_forged_source_or_an_org_that_disagrees_is_dropped() -> None:
    data = b'{"draft_id": "d-1", "org_id": "org-b"}'
    assert update_of(envelope("draft.approved", data, org="org-a")) is None
    assert update_of(envelope("draft.approved", b'{"draft_id": "d-1"}', source="evil")) is None
    assert (
        update_of(envelope("export.sent", b'{"draft_id": "d-1"}', source="/orderflow/draft-api"))
        is None
    )
    assert update_of(envelope("draft.approved", b"[1, 2]")) is None


def test_an_update_goes_to_the_subscribers_of_its_org_only() -> None:
    feed = Feed({})
    with feed.subscribe("org-a") as a, feed.subscribe("org-b") as b:
        feed.publish("org-a", {"draft_id": "d-1", "status": "PUSHED"})
        assert a.queue.get_nowait()["draft_id"] == "d-1"
        assert b.queue.empty()
    assert feed._subscribers == {}  # nothing left behind
