"""Each service's own /metrics, scraped as Prometheus would: every OrderFlow metric is
named `orderflow_*`, every metric the alert rules read exists, and a push moves the
push, export and lag metrics."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.flow import Flow, wait_for
from tests.e2e.metrics import Samples, scrape, value
from tests.unit.deploy.test_prometheus_rules import metrics_used_by_rules

pytestmark = pytest.mark.stack

SERVICES = ("draft-api", "export-service", "audit-service")
#: prometheus_client's own process and runtime collectors
FOREIGN_PREFIXES = ("python_", "process_")


def exposed_names(families: dict[str, str]) -> set[str]:
    """The names a query uses: a counter's family `x` is exposed as `x_total`."""
    return {f"{n}_total" if kind == "counter" else n for n, kind in families.items()}


def test_every_metric_follows_the_scheme_and_the_rules_find_theirs(stack: Any) -> None:
    exposed: dict[str, set[str]] = {}
    for service in SERVICES:
        families, _ = scrape(stack, service)
        ours = {n for n in families if not n.startswith(FOREIGN_PREFIXES)}
        assert ours, service
        assert all(n.startswith("orderflow_") for n in ours), (service, sorted(ours))
        exposed[service] = exposed_names(families)
    everywhere = set().union(*exposed.values())
    missing = metrics_used_by_rules() - everywhere
    assert not missing, f"the alert rules read metrics no service exposes: {sorted(missing)}"
    assert "orderflow_export_backlog_oldest_age_seconds" in exposed["export-service"]
    assert "orderflow_export_exports_finished_total" in exposed["export-service"]
    assert "orderflow_audit_verification_failures_total" in exposed["audit-service"]
    assert "orderflow_draft_pushes_total" in exposed["draft-api"]
    for service in SERVICES:
        assert "orderflow_consumer_lag_records" in exposed[service], service
    for service in ("draft-api", "export-service"):
        assert "orderflow_outbox_relay_leader" in exposed[service], service
        assert "orderflow_outbox_backlog_events" in exposed[service], service


def test_a_push_moves_the_push_export_and_lag_metrics(stack: Any) -> None:
    flow = Flow(stack)
    try:
        _, draft_before = scrape(stack, "draft-api")
        _, export_before = scrape(stack, "export-service")
        draft_id = flow.approved_draft()
        key = str(uuid.uuid4())
        flow.push(draft_id, key)
        flow.push(draft_id, key)  # the same key: replayed
        unapproved = flow.call(
            "POST",
            "/draft-orders",
            json={"customer_id": "C-E2E", "external_ref": f"E2E-{uuid.uuid4().hex[:12]}"},
        )
        assert unapproved.status_code == 201, unapproved.text
        refused = flow.call(
            "POST",
            f"/draft-orders/{unapproved.json()['id']}/push",
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert refused.status_code == 409, refused.text
        flow.wait_settled([draft_id])
    finally:
        flow.close()

    _, draft_after = scrape(stack, "draft-api")
    pushes = "orderflow_draft_pushes_total"
    for result, reason in (("accepted", ""), ("replayed", ""), ("refused", "draft_not_approved")):
        labels = {"operation": "push", "result": result, "reason": reason}
        moved = value(draft_after, pushes, **labels) - value(draft_before, pushes, **labels)
        assert moved == 1, (result, moved)

    finished = "orderflow_export_exports_finished_total"
    sent = {"status": "SENT", "code": ""}

    def export_figures() -> Samples | None:
        _, now = scrape(stack, "export-service")
        return (
            now if value(now, finished, **sent) > value(export_before, finished, **sent) else None
        )

    export_after = wait_for(export_figures, timeout=30, what="the SENT export counted")
    for name, labels in (
        ("orderflow_export_attempts_total", {"outcome": "SENT"}),
        ("orderflow_export_push_requests_total", {}),
        ("orderflow_export_attempt_seconds_count", {}),
        ("orderflow_export_delivery_latency_seconds_count", {}),
    ):
        assert value(export_after, name, **labels) > value(export_before, name, **labels), name
    handled = "orderflow_consumer_events_handled_total"
    request = {"consumer": "export-service", "topic": "draft.push_requested"}
    assert value(export_after, handled, **request) > value(export_before, handled, **request)
    for state in ("opening", "idle", "busy"):
        assert ("orderflow_export_sftp_sessions", frozenset({("state", state)})) in export_after
    # draft-api's relay published the push request, and its lag was observed
    published = {"schema": "draft", "topic": "draft.push_requested"}
    assert value(draft_after, "orderflow_outbox_events_published_total", **published) > value(
        draft_before, "orderflow_outbox_events_published_total", **published
    )
    lag = "orderflow_outbox_publish_lag_seconds_count"
    assert value(draft_after, lag, schema="draft") > value(draft_before, lag, schema="draft")
    for status in ("PENDING", "DELIVERING"):
        assert ("orderflow_export_backlog_exports", frozenset({("status", status)})) in export_after
    # the consumers of draft-api (export results) and export-service (push requests)
    # report their lag per partition once they have fetched
    for service, consumer, topic in (
        ("export-service", "export-service", "draft.push_requested"),
        ("draft-api", "draft-api", "export.sent"),
    ):

        def lag(service: str = service, consumer: str = consumer, topic: str = topic) -> bool:
            _, samples = scrape(stack, service)
            return any(
                name == "orderflow_consumer_lag_records"
                and dict(labels).get("consumer") == consumer
                and dict(labels).get("topic") == topic
                for name, labels in samples
            )

        wait_for(lag, timeout=30, what=f"{consumer}'s lag on {topic}")

    def head_moved() -> bool:
        _, samples = scrape(stack, "audit-service")
        return any(
            name == "orderflow_audit_chain_head_timestamp_seconds"
            and dict(labels).get("org_id") == flow.org
            for name, labels in samples
        )

    wait_for(head_moved, timeout=30, what="the org's audit chain head")


def test_a_failed_delivery_moves_the_failure_and_sftp_error_metrics(stack: Any) -> None:
    """A connection whose remote directory does not exist: the delivery fails for good
    with `remote_dir_missing`, and the export, failure and SFTP error counts say so."""
    code = "remote_dir_missing"
    flow = Flow(stack, connector=False)
    try:
        flow.add_connection(remote_directory=f"/no-such-dir-{uuid.uuid4().hex[:6]}")
        _, before = scrape(stack, "export-service")
        draft_id = flow.approved_draft()
        flow.push(draft_id)
        flow.wait_settled([draft_id], final=("ERROR",))
    finally:
        flow.close()
    recorded = stack.psql(
        "SELECT error_json->>'error_code' FROM draft.push_attempt WHERE draft_id = %s",
        (draft_id,),
    )
    assert recorded == [(code,)], recorded

    moves = {
        ("orderflow_export_exports_finished_total", (("status", "FAILED"), ("code", code))): 1,
        ("orderflow_export_failures_total", (("code", code),)): 1,
        ("orderflow_export_sftp_errors_total", (("kind", code),)): 1,
        ("orderflow_export_attempts_total", (("outcome", "FAILED"),)): 1,
        ("orderflow_export_push_requests_total", ()): 1,
        ("orderflow_export_attempt_seconds_count", ()): 1,
    }

    def moved(samples: Samples) -> dict[str, float]:
        return {
            name: value(samples, name, **dict(labels)) - value(before, name, **dict(labels))
            for name, labels in moves
        }

    def all_moved() -> Samples | None:
        _, now = scrape(stack, "export-service")
        figures = moved(now)
        return now if all(figures[name] >= 1 for name, _ in moves) else None

    after = wait_for(all_moved, timeout=30, what=f"the failure counted ({moves})")
    # once each: the failure was final, nothing retried it or counted it twice (only this
    # test's org delivers to a missing directory)
    figures = moved(after)
    for name, labels in moves:
        if dict(labels).get("code") == code or dict(labels).get("kind") == code:
            assert figures[name] == 1, (name, figures)
