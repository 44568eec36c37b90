"""The records of a real push, read from the running stack's topics as an integrator
reads them (the read-only `integration` principal), parse in the official `cloudevents`
SDK with their extensions and match shared/asyncapi.yaml: each record's headers, key
and payload against its channel's message, and its data against the JSON Schema. A
dead letter matches the document's dead-letter message."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from orderflow_shared.contracts.services import expected_source, system_actor

from tests.contract_checks import (
    AsyncApiMessages,
    header_dict,
    json_schema_validator,
    load_asyncapi,
    parse_with_sdk,
)
from tests.e2e.flow import Flow, wait_for
from tests.e2e.metrics import scrape, value

pytestmark = pytest.mark.stack

DEADLINE = 90.0
#: what the two pushes below must leave on the topics, per organisation
EXPECTED_PER_ORG = {
    "draft.created": 1,
    "draft.validated": 1,
    "draft.approved": 1,
    "draft.push_requested": 1,
    "erp_connection.changed": 1,
}


def _org(headers: dict[str, bytes]) -> str:
    return (headers.get("ce_orgid") or headers.get("orgid") or b"").decode(errors="replace")


async def _read(
    options: dict[str, Any], topics: list[str], want: dict[str, Counter[str]]
) -> list[Any]:
    """Every record of the orgs in `want` until each org has what it wants (per topic)."""
    consumer = AIOKafkaConsumer(
        *topics,
        **options,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    seen: dict[str, Counter[str]] = {org: Counter() for org in want}
    try:
        deadline = time.monotonic() + DEADLINE
        while any(seen[o][t] < n for o, w in want.items() for t, n in w.items()):
            assert time.monotonic() < deadline, f"records never arrived: saw {seen}, want {want}"
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    org = _org(header_dict(record.headers))
                    if org in want:
                        found.append(record)
                        seen[org][record.topic] += 1
    finally:
        await consumer.stop()
    return found


def test_real_records_of_a_push_read_in_the_sdk_and_match_the_asyncapi_document(
    stack: Any,
) -> None:
    document = AsyncApiMessages(load_asyncapi())
    event_topics = [t for t in document.channels if t != "dead_letter"]
    good, bad = Flow(stack), Flow(stack, connector=False)
    try:
        bad.add_connection(
            remote_directory=f"/no-such-dir-{uuid.uuid4().hex[:6]}", file_format="json"
        )
        sent, failed = good.approved_draft(), bad.approved_draft()
        good.push(sent)
        bad.push(failed)
        good.wait_settled([sent], timeout=120)
        bad.wait_settled([failed], timeout=120, final=("ERROR",))
    finally:
        good.close()
        bad.close()
    want = {
        good.org: Counter({**EXPECTED_PER_ORG, "export.sent": 1}),
        bad.org: Counter({**EXPECTED_PER_ORG, "export.failed": 1}),
    }
    records = asyncio.run(_read(stack.kafka_options("integration"), event_topics, want))

    types = set()
    for record in records:
        headers = header_dict(record.headers)
        view = parse_with_sdk(record.key, record.value, record.headers)
        where = f"{record.topic}@{record.offset} ({view.type})"
        types.add(view.type)
        # the SDK sees the extensions, and every record names its org and its actor
        assert view.orgid == view.legacy_orgid == _org(headers), where
        person = "user-1"  # the `sub` of the flows' tokens
        automatic = record.topic.startswith("export.")
        assert view.actorid == (system_actor("export-service") if automatic else person), where
        assert view.source == expected_source(record.topic), where
        assert view.subject == record.key.decode() == view.partitionkey, where
        assert view.data == view.legacy_data
        schema_errors = [e.message for e in json_schema_validator(view.type).iter_errors(view.data)]
        assert schema_errors == [], f"{where}: data against shared/schemas: {schema_errors}"
        errors = document.errors(record.topic, record.key, record.value, headers)
        assert errors == [], f"{where} does not match its AsyncAPI message: {errors}"
    assert {
        "orderflow.draft.created.v1",
        "orderflow.draft.push_requested.v1",
        "orderflow.export.sent.v1",
        "orderflow.export.failed.v1",
        "orderflow.erp_connection.changed.v1",
    } <= types


async def _poison_and_read(options: dict[str, Any], marker: bytes) -> list[Any]:
    producer = AIOKafkaProducer(**options)
    await producer.start()
    try:
        headers = [
            ("ce_id", str(uuid.uuid4()).encode()),
            ("ce_type", b"orderflow.draft.push_requested.v1"),
            ("ce_source", b"/orderflow/draft-api"),
            ("ce_specversion", b"1.0"),
            ("ce_time", b"2026-12-01T00:00:00+00:00"),
            ("ce_subject", marker),
            ("ce_orgid", b"demo"),
            ("ce_actorid", b"user-1"),
            ("content-type", b"application/json"),
        ]
        await producer.send_and_wait(
            "draft.push_requested", value=b'{"draft_id": 1}', key=marker, headers=headers
        )
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        "dead_letter",
        **options,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + DEADLINE
        # export-service and audit-service both read draft.push_requested
        while len({dict(r.headers).get("dlt_consumer") for r in found}) < 2:
            assert time.monotonic() < deadline, f"dead letters never arrived ({len(found)})"
            batch = await consumer.getmany(timeout_ms=500)
            found += [r for rs in batch.values() for r in rs if r.key == marker]
    finally:
        await consumer.stop()
    return found


def test_a_dead_letter_matches_the_asyncapi_dead_letter_message(stack: Any) -> None:
    document = AsyncApiMessages(load_asyncapi())
    marker = f"contract-poison-{uuid.uuid4().hex}".encode()
    dead = "orderflow_consumer_dead_letters_total"
    labels = {"consumer": "export-service", "topic": "draft.push_requested"}
    _, before = scrape(stack, "export-service")
    letters = asyncio.run(_poison_and_read(stack.kafka_options("admin"), marker))

    # the consumer counts the record it dead-lettered (just after Kafka acknowledged it,
    # so a moment after a reader may see it), once
    def counted() -> float:
        _, after = scrape(stack, "export-service")
        return value(after, dead, **labels) - value(before, dead, **labels)

    wait_for(counted, timeout=30, what="the dead letter counted")
    assert counted() == 1
    for letter in letters:
        headers = header_dict(letter.headers)
        assert headers["dlt_topic"] == b"draft.push_requested"
        assert letter.value == b'{"draft_id": 1}'  # the original value, as it was
        errors = document.errors("dead_letter", letter.key, letter.value, headers)
        assert errors == [], f"dead letter does not match its AsyncAPI message: {errors}"
