"""Hostile input against the running stack: fuzzed requests from each service's own
OpenAPI, forged tokens, cross-org access and a poison record on every consumed topic."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.e2e.flow import ALL_ROLES, Flow, wait_for

pytestmark = pytest.mark.stack

SERVICES = ("draft-api", "export-service", "audit-service")


@pytest.mark.parametrize("service", SERVICES)
def test_fuzzed_requests_pass_every_schemathesis_check_with_stateful_links(
    stack: Any, service: str, tmp_path: Any
) -> None:
    url = stack.service_urls[service]
    # an org with an active connection, so pushes reached by the links get to the ERP
    flow = Flow(stack)
    flow.close()
    token = stack.token(roles=ALL_ROLES, org=flow.org)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{url}/openapi.json",
            "--url",
            url,
            "-H",
            f"Authorization: Bearer {token}",
            # every check schemathesis has (response conformance, positive and negative
            # data, headers, ...), and the stateful phase follows the specs' links
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--continue-on-failure",
            "--max-examples",
            "25",
            "--seed",
            "20261126",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--no-color",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    failures = result.stdout[result.stdout.find("FAILURES") :]
    assert result.returncode == 0, failures[-30000:] + result.stderr[-2000:]


def _forged(stack: Any, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "sub": "mallory",
        "org_id": "demo",
        "roles": ["admin", "approver", "operator"],
        "iss": "orderflow",
        "aud": "orderflow",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides.pop("claims", {}))
    key = overrides.pop("key", stack.jwt_secret)
    algorithm = overrides.pop("algorithm", "HS256")
    return jwt.encode(claims, key, algorithm=algorithm)


def _alg_none(stack: Any) -> str:
    import base64

    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(time.time())
    return (
        part({"alg": "none", "typ": "JWT"})
        + "."
        + part(
            {
                "sub": "mallory",
                "org_id": "demo",
                "roles": ["admin"],
                "iss": "orderflow",
                "aud": "orderflow",
                "exp": now + 600,
            }
        )
        + "."
    )


@pytest.mark.parametrize("path", ["/draft-orders", "/erp-connections", "/audit-log"])
def test_forged_expired_and_unsigned_tokens_are_refused_at_every_service(
    stack: Any, path: str
) -> None:
    bad = {
        "wrong signature": _forged(stack, key="not-the-secret-but-long-enough-0123456789"),
        "expired": _forged(stack, claims={"exp": int(time.time()) - 60}),
        "alg none": _alg_none(stack),
        "wrong audience": _forged(stack, claims={"aud": "someone-else"}),
        "wrong issuer": _forged(stack, claims={"iss": "someone-else"}),
        "garbage": "not.a.jwt",
    }
    for name, token in bad.items():
        response = httpx.get(
            f"{stack.gateway_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert response.status_code == 401, (name, response.status_code, response.text)
        assert response.json()["detail"], name
    assert httpx.get(f"{stack.gateway_url}{path}", timeout=10).status_code == 401


def test_another_orgs_draft_connection_and_audit_trail_are_invisible(stack: Any) -> None:
    mine, theirs = Flow(stack), Flow(stack)
    try:
        draft_id = mine.approved_draft()
        mine.push(draft_id)
        mine.wait_settled([draft_id])
        assert theirs.http.get(f"/draft-orders/{draft_id}").status_code == 404
        assert theirs.http.post(f"/draft-orders/{draft_id}/approve").status_code == 404
        assert theirs.http.post(f"/draft-orders/{draft_id}/push").status_code == 404
        listed = theirs.http.get("/draft-orders").json()
        assert draft_id not in json.dumps(listed)
        audit = theirs.http.get("/audit-log", params={"entity_id": draft_id})
        assert audit.status_code == 200 and audit.json() == []
        connections = theirs.http.get("/erp-connections").json()
        assert mine.org not in json.dumps(connections)
    finally:
        mine.close()
        theirs.close()


POISON = [
    ("no headers at all", b"{}", []),
    ("not JSON", b"\xff\xfe not json", [("ce_type", b"orderflow.export.sent.v1")]),
    (
        "unknown type",
        b"{}",
        [
            ("ce_id", str(uuid.uuid4()).encode()),
            ("ce_type", b"orderflow.nonsense.v9"),
            ("ce_source", b"/mallory"),
            ("ce_specversion", b"1.0"),
            ("ce_time", b"2026-11-26T00:00:00+00:00"),
            ("ce_subject", b"x"),
            ("orgid", b"demo"),
        ],
    ),
]
CONSUMED = ["draft.push_requested", "export.sent", "export.failed", "erp_connection.changed"]


async def _poison_and_read_dead_letters(kafka: dict[str, Any], marker: str) -> list[dict[str, str]]:
    producer = AIOKafkaProducer(**kafka)
    await producer.start()
    try:
        for topic in CONSUMED:
            for _name, value, headers in POISON:
                await producer.send_and_wait(
                    topic, value=value, key=marker.encode(), headers=headers
                )
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        "dead_letter",
        **kafka,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict[str, str]] = []
    try:
        deadline = time.monotonic() + 60
        want = len(CONSUMED) * len(POISON)
        while (
            time.monotonic() < deadline
            and len({(f["dlt_topic"], f.get("dlt_consumer")) for f in found}) < want
        ):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.key == marker.encode():
                        found.append({k: v.decode(errors="replace") for k, v in record.headers})
    finally:
        await consumer.stop()
    return found


def test_a_poison_record_on_every_consumed_topic_lands_in_the_dead_letter_topic(
    stack: Any,
) -> None:
    marker = f"poison-{uuid.uuid4().hex}"
    found = asyncio.run(_poison_and_read_dead_letters(stack.kafka_options("admin"), marker))
    for topic in CONSUMED:
        reasons = [f for f in found if f.get("dlt_topic") == topic]
        assert len(reasons) >= len(POISON), f"poison records on {topic} not dead-lettered"
        assert all(f.get("dlt_reason") for f in reasons)
    # and the consumers carried on: the whole flow still works
    flow = Flow(stack)
    try:
        draft_id = flow.approved_draft()
        flow.push(draft_id)
        flow.wait_settled([draft_id], timeout=60)
    finally:
        flow.close()
    unreadable = wait_for(
        lambda: stack.psql(
            "SELECT count(*) FROM audit.audit_log WHERE action = 'UNREADABLE_EVENT'"
        )[0][0],
        timeout=60,
        what="UNREADABLE_EVENT audit entries",
    )
    assert unreadable >= 1
