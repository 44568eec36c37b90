"""JSON logs: one object per line, service name attached, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from orderflow_shared.logging import REDACTED, configure_logging, get_logger, redact


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    configure_logging("unit-service", "DEBUG", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_a_structlog_event_is_one_json_line_with_service_and_level(stream: io.StringIO) -> None:
    get_logger("orders").info("draft_created", draft_id="d-1")
    [entry] = lines(stream)
    assert entry["event"] == "draft_created"
    assert entry["service"] == "unit-service"
    assert entry["level"] == "info"
    assert entry["draft_id"] == "d-1"
    assert "timestamp" in entry


def test_secret_keys_are_redacted_at_any_depth(stream: io.StringIO) -> None:
    get_logger("conn").info(
        "connection_saved",
        password="hunter2",
        sftp={"host": "h", "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc"},
        headers=[{"Authorization": "Bearer abc.def.ghi"}],
        api_token="t0k3n",
    )
    text = stream.getvalue()
    for secret in ("hunter2", "abc.def.ghi", "t0k3n", "BEGIN OPENSSH"):
        assert secret not in text
    [entry] = lines(stream)
    assert entry["password"] == REDACTED
    assert entry["sftp"] == {"host": "h", "private_key": REDACTED}


def test_secrets_inside_free_text_are_masked(stream: io.StringIO) -> None:
    logging.getLogger("stdlib").warning(
        "connect to %s with header Bearer eyJhbGciOi.abc.def",
        "postgresql://svc:pa55word@db:5432/orderflow",
    )
    [entry] = lines(stream)
    assert "pa55word" not in str(entry["event"])
    assert "eyJhbGciOi" not in str(entry["event"])
    assert "postgresql://svc:" in str(entry["event"])
    assert entry["service"] == "unit-service"


def test_stdlib_exceptions_are_rendered_into_the_json(stream: io.StringIO) -> None:
    try:
        raise ValueError("bad thing")
    except ValueError:
        logging.getLogger("stdlib").exception("failed")
    [entry] = lines(stream)
    assert "ValueError: bad thing" in str(entry["exception"])


def test_redact_keeps_harmless_values() -> None:
    value = {"draft_id": "d-1", "count": 3, "nested": {"token_count": None, "name": "x"}}
    assert redact(value) == value
