"""The stack's monitoring (always on in the test stack, `make up MONITORING=1` in dev):
one push is one trace across the three services in a real Zipkin, the worker logs the
outcome with its trace id, and Prometheus scrapes every process of the stack."""

from __future__ import annotations

import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.flow import Flow, wait_for

pytestmark = pytest.mark.stack

SERVICES = {"draft-api", "export-service", "audit-service"}


def stack_file(stack: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(stack.state_dir) / "stack.json").read_text())
    return data


def zipkin_trace(zipkin: str, trace_id: str) -> list[dict[str, Any]]:
    try:
        answer = httpx.get(f"{zipkin}/api/v2/trace/{trace_id}", timeout=10)
    except httpx.TimeoutException:  # a busy Zipkin: asked again until the deadline
        return []
    if answer.status_code == 404:
        return []
    assert answer.status_code == 200, answer.text
    spans: list[dict[str, Any]] = answer.json()
    return spans


def test_one_push_is_one_trace_across_the_three_services(stack: Any) -> None:
    monitoring = stack_file(stack)["monitoring"]
    assert monitoring["enabled"] is True
    zipkin = monitoring["zipkin"]["url"]
    flow = Flow(stack)
    try:
        draft_id = flow.approved_draft()
        trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
        pushed = flow.call(
            "POST",
            f"/draft-orders/{draft_id}/push",
            headers={
                "Idempotency-Key": str(uuid.uuid4()),
                "traceparent": f"00-{trace_id}-{caller_span}-01",
            },
        )
        assert pushed.status_code in (200, 202), pushed.text
        export_id = str(pushed.json()["erp_export_id"])
        flow.wait_settled([draft_id])
    finally:
        flow.close()

    wanted_names = {
        "publish draft.push_requested",  # draft-api's relay
        "process draft.push_requested",  # export-service's consumer (and audit's)
        "deliver export",  # the export worker
        "upload sftp_dropzone",  # the SFTP upload inside it
        "publish export.sent",  # export-service's relay
        "process export.sent",  # draft-api's consumer (and audit's)
        "apply orderflow.export.sent.v1",  # the draft's status change
    }

    seen: dict[str, set[str]] = {"services": set(), "missing": set()}

    def complete() -> list[dict[str, Any]] | None:
        spans = zipkin_trace(zipkin, trace_id)
        services = {s.get("localEndpoint", {}).get("serviceName") for s in spans}
        names = {s.get("name") for s in spans}
        missing = {n.lower() for n in wanted_names} - names
        seen["services"], seen["missing"] = {str(s) for s in services}, missing
        return spans if SERVICES <= services and not missing else None

    try:
        spans = wait_for(
            complete, timeout=60, what=f"trace {trace_id} in Zipkin with spans of the 3 services"
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; services {seen['services']}, missing {seen['missing']}"
        ) from None
    assert {s["traceId"] for s in spans} == {trace_id}
    by_id = {s["id"]: s for s in spans}
    # one tree: every span's parent is in the trace, or is the caller's span
    for span in spans:
        assert span.get("parentId") in by_id or span.get("parentId") == caller_span, span
    (server,) = [s for s in spans if s.get("parentId") == caller_span]
    assert server["localEndpoint"]["serviceName"] == "draft-api"
    assert server.get("kind") == "SERVER"
    deliveries = [s for s in spans if s["name"] == "deliver export"]
    assert {d["tags"]["orderflow.export_id"] for d in deliveries} == {export_id}
    # the upload runs inside the delivery; the result event's publish follows from it
    (upload,) = [s for s in spans if s["name"] == "upload sftp_dropzone"]
    assert upload["parentId"] in {d["id"] for d in deliveries}
    audited = {
        s["name"]
        for s in spans
        if s["localEndpoint"]["serviceName"] == "audit-service" and s.get("kind") == "CONSUMER"
    }
    assert {"process draft.push_requested", "process export.sent"} <= audited

    def logged() -> dict[str, Any] | None:
        for log in Path(stack.log_file("export-service")).parent.glob("export-worker-*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if f"Export completed: {export_id}" in line:
                    record: dict[str, Any] = json.loads(line)
                    return record
        return None

    line = wait_for(logged, timeout=30, what=f"the worker's 'Export completed: {export_id}'")
    assert line["level"] == "info"
    assert line["trace_id"] == trace_id
    assert line["export_id"] == export_id


def test_prometheus_scrapes_every_process_of_the_stack(stack: Any) -> None:
    described = stack_file(stack)
    prometheus = described["monitoring"]["prometheus"]["url"]
    processes = set(described["processes"])
    assert SERVICES <= processes and len(processes) > len(SERVICES)

    def all_up() -> dict[str, str] | None:
        answer = httpx.get(f"{prometheus}/api/v1/targets", timeout=10)
        assert answer.status_code == 200, answer.text
        targets = answer.json()["data"]["activeTargets"]
        health = {t["labels"]["process"]: t["health"] for t in targets}
        return health if set(health) == processes and set(health.values()) == {"up"} else None

    health = wait_for(all_up, timeout=60, what="every process of the stack up in Prometheus")
    assert set(health) == processes
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    alerts = {rule["name"] for group in rules for rule in group["rules"]}
    assert "OrderFlowExportBacklogOld" in alerts
