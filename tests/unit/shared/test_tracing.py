"""orderflow_shared.tracing: what is exported when, how the trace crosses the outbox and
Kafka (carriers), per-event spans of the consumer runner, and trace ids in log lines.

The spans land in an in-memory exporter installed as this process's tracer provider
(OpenTelemetry allows setting it once; the fixture resets that guard for each test)."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.util._once import Once
from orderflow_shared import tracing
from orderflow_shared.contracts import ExportSentV1
from orderflow_shared.logging import configure_logging
from orderflow_shared.messaging.consumer import ConsumerRunner
from orderflow_shared.messaging.envelope import Envelope


def _install(provider: TracerProvider) -> None:
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _install(provider)
    yield exporter
    provider.shutdown()
    tracing.reset_for_tests()


def test_exporters_come_only_from_the_environment() -> None:
    assert tracing.exporter_endpoints({}) == {}
    assert tracing.exporter_endpoints({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == {
        "otlp": "http://c:4318"
    }
    both = tracing.exporter_endpoints(
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces",
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT": "http://z:9411/api/v2/spans",
        }
    )
    assert both == {"otlp": "http://c:4318/v1/traces", "zipkin": "http://z:9411/api/v2/spans"}


def test_without_an_exporter_ids_propagate_but_nothing_is_recorded() -> None:
    _install(TracerProvider(sampler=ParentBased(root=ALWAYS_OFF)))
    try:
        with tracing.span("root") as root:
            assert not root.is_recording()
            carrier = tracing.current_carrier()
        trace_id = format(root.get_span_context().trace_id, "032x")
        assert carrier["traceparent"].split("-")[1] == trace_id
        # a caller that samples is followed: its trace id and flag go on
        caller = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"}
        with tracing.span("child", parent=caller) as child:
            assert format(child.get_span_context().trace_id, "032x") == "ab" * 16
            assert tracing.current_carrier()["traceparent"].endswith("-01")
    finally:
        tracing.reset_for_tests()


def test_a_carrier_makes_the_next_span_a_child(spans: InMemorySpanExporter) -> None:
    with tracing.span("request") as request:
        carrier = tracing.current_carrier()
    with tracing.attached(carrier), tracing.span("later, elsewhere"):
        pass
    producer = tracing.producer_span("draft.push_requested", carrier, "e-1")
    producer.end()
    finished = {s.name: s for s in spans.get_finished_spans()}
    request_id = request.get_span_context().span_id
    assert finished["later, elsewhere"].parent.span_id == request_id  # type: ignore[union-attr]
    publish = finished["publish draft.push_requested"]
    assert publish.parent.span_id == request_id  # type: ignore[union-attr]
    assert publish.kind is trace.SpanKind.PRODUCER
    assert tracing.carrier_for_span(producer)["traceparent"].split("-")[2] == format(
        producer.get_span_context().span_id, "016x"
    )


def _envelope(traceparent: str | None) -> Envelope:
    from datetime import UTC, datetime

    data = ExportSentV1(
        erp_export_id=uuid.uuid4(),
        draft_id=uuid.uuid4(),
        export_storage_key="org-a/x.csv",
        remote_path="/inbox/x.csv",
        checksum_sha256="0" * 64,
        size_bytes=10,
        attempts=1,
        sent_at=datetime.now(UTC),
    )
    return Envelope.wrap(
        data,
        source="orderflow/export-service",
        subject=str(data.draft_id),
        org_id="org-a",
        actor_id="system:export-service",
        traceparent=traceparent,
    )


def test_the_runner_hands_each_event_its_own_consumer_span(spans: InMemorySpanExporter) -> None:
    runner = ConsumerRunner(
        kafka={"bootstrap_servers": "127.0.0.1:1"},
        group_id="g",
        topics=["export.sent"],
        handler=lambda events: None,  # type: ignore[arg-type, return-value]
    )
    upstream = f"00-{'12' * 16}-{'34' * 8}-01"
    handed, started = runner._traced([_envelope(upstream), _envelope(None)])
    for span in started:
        span.end()
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["process export.sent"] * 2
    first, second = finished
    assert format(first.context.trace_id, "032x") == "12" * 16
    assert first.parent.span_id == int("34" * 8, 16)  # type: ignore[union-attr]
    assert second.parent is None  # a record without traceparent starts a trace
    assert first.kind is trace.SpanKind.CONSUMER
    # the handler continues from the consumer span, not from the producer's
    for envelope, span in zip(handed, finished, strict=True):
        assert envelope.traceparent is not None
        assert envelope.traceparent.split("-")[2] == format(span.context.span_id, "016x")


def test_log_lines_carry_the_trace_id(spans: InMemorySpanExporter) -> None:
    stream = io.StringIO()
    configure_logging("unit-test", "INFO", stream=stream)
    log = logging.getLogger("tracing-test")
    with tracing.span("work") as span:
        log.info("inside")
    log.info("outside")
    lines: list[dict[str, Any]] = [json.loads(line) for line in stream.getvalue().splitlines()]
    inside = next(line for line in lines if line["event"] == "inside")
    outside = next(line for line in lines if line["event"] == "outside")
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(span.get_span_context().span_id, "016x")
    assert "trace_id" not in outside
