"""Envelope round trip, poison detection, and the outbox/inbox table shapes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from orderflow_shared.contracts.events import DraftApprovedV1
from orderflow_shared.messaging.envelope import Envelope, EnvelopeError
from orderflow_shared.messaging.inbox import inbox_table
from orderflow_shared.messaging.outbox import default_lock_key, outbox_table
from sqlalchemy import MetaData
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.schema import CreateIndex, CreateTable

_PG: Any = PGDialect  # untyped in SQLAlchemy


def approved() -> Envelope:
    draft_id = uuid.uuid4()
    return Envelope.wrap(
        DraftApprovedV1(
            draft_id=draft_id, approved_by_user_id="u-1", approved_at=datetime.now(UTC)
        ),
        source="draft-api",
        subject=str(draft_id),
        org_id="demo",
        actor_id="u-1",
    )


def test_an_envelope_survives_the_trip_through_kafka_headers() -> None:
    original = approved()
    back = Envelope.from_kafka(original.key.encode(), original.data, original.kafka_headers())
    assert back == original
    assert back.topic == "draft.approved"
    assert back.parse() == original.parse()


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda h, v: ([x for x in h if x[0] != "ce_id"], v), "missing header"),
        (lambda h, v: (h, b"not json"), "not JSON"),
        (lambda h, v: (h, None), "no value"),
        (lambda h, v: ([("ce_id", b"\xff"), *h[1:]], v), "UTF-8"),
        (lambda h, v: ([("ce_id", b"123"), *h[1:]], v), "bad ce_id"),
    ],
)
def test_unreadable_records_are_envelope_errors(mangle: object, reason: str) -> None:
    envelope = approved()
    headers, value = mangle(envelope.kafka_headers(), envelope.data)  # type: ignore[operator]
    with pytest.raises(EnvelopeError, match=reason):
        Envelope.from_kafka(b"k", value, headers)


def test_an_unknown_type_or_invalid_data_fails_to_parse() -> None:
    envelope = approved()
    headers = [
        (n, b"orderflow.draft.deleted.v1" if n == "ce_type" else v)
        for n, v in envelope.kafka_headers()
    ]
    with pytest.raises(EnvelopeError, match="unknown event type"):
        Envelope.from_kafka(b"k", envelope.data, headers).parse()
    with pytest.raises(EnvelopeError, match="invalid"):
        Envelope.from_kafka(b"k", b'{"draft_id": 1}', envelope.kafka_headers()).parse()


def test_the_outbox_table_has_the_contract_columns_and_partial_index() -> None:
    metadata = MetaData()
    table = outbox_table(metadata, "draft")
    assert outbox_table(metadata, "draft") is table
    ddl = str(CreateTable(table).compile(dialect=_PG()))
    for column in (
        "id BIGSERIAL",
        "event_id UUID NOT NULL",
        "headers JSONB",
        "payload BYTEA",
        "published_at TIMESTAMP WITH TIME ZONE,",
        "UNIQUE (event_id)",
    ):
        assert column in ddl
    [index] = table.indexes
    index_ddl = str(CreateIndex(index).compile(dialect=_PG()))
    assert "WHERE published_at IS NULL" in index_ddl.replace("draft.outbox.", "")


def test_the_inbox_key_is_consumer_and_event_id() -> None:
    table = inbox_table(MetaData(), "export")
    assert [c.name for c in table.primary_key.columns] == ["consumer", "event_id"]
    assert table.schema == "export"


def test_the_relay_lock_key_is_stable_per_schema_and_fits_a_bigint() -> None:
    assert default_lock_key("draft") == default_lock_key("draft")
    assert default_lock_key("draft") != default_lock_key("export")
    assert -(2**63) <= default_lock_key("draft") < 2**63
