"""Tracing with OpenTelemetry: one W3C trace from the HTTP request to the last consumer.

Set up once per process by `configure_tracing(service)`, which
`orderflow_shared.logging.configure_logging` calls (so every service and role process
gets it without wiring of its own). Nothing happens at import time.

- An exporter is installed only when one is configured in the environment:
  `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): OTLP over
  HTTP/protobuf; `OTEL_EXPORTER_ZIPKIN_ENDPOINT` (e.g.
  `http://127.0.0.1:9411/api/v2/spans`): Zipkin's JSON API (the local stack's Zipkin
  server speaks no OTLP). Both may be set. `OTEL_BSP_SCHEDULE_DELAY` (ms) and
  `OTEL_TRACES_SAMPLER` are read by the SDK as usual.
- Without an exporter, spans are not recorded unless the caller's `traceparent` asks for
  it (sampler parent-based, root off): ids are still made, logged and propagated, so a
  caller's trace goes through, and no instrumentation of SQLAlchemy or Redis is installed.
- Root spans of kind CLIENT (a poll's SQL or Redis command outside any request or
  event) are never sampled, nor requests of the probes and scrapes (`/livez`,
  `/readyz`, `/healthz`, `/metrics`, also where FastAPI's own telemetry traces a role
  process's small app): they would bury the pushes under background noise.
- `instrument_app(app)`: FastAPI server spans (`make_service_app` calls it); health and
  metrics paths are excluded. `instrument_engine(engine)`: SQLAlchemy spans
  (`orderflow_shared.db.make_engine` calls it) when exporting.
- Propagation across Kafka is done here, not by an instrumentation: the outbox stores
  `current_carrier()` with each row, the relay publishes under a PRODUCER span that
  continues it and writes that span's `traceparent` header, and `ConsumerRunner`
  starts a CONSUMER span per record from the header (`consumer_span`) and hands the
  handler envelopes whose `traceparent` is that span's: a handler continues the trace
  with `with attached(envelope_carrier(envelope)):`.
- `add_trace_ids` (a structlog processor) puts `trace_id` and `span_id` on every log
  line written while a span is active.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.trace import SpanKind as SpanKind

_log = logging.getLogger(__name__)

#: the instrumentation scope of the spans made here
TRACER_NAME = "orderflow"
#: paths whose requests make no span (probes and scrapes)
EXCLUDED_PATHS = "livez,readyz,healthz,metrics"
_PROBE_PATHS = frozenset(f"/{path}" for path in EXCLUDED_PATHS.split(","))
_PROBE_SPAN_SUFFIXES = tuple(f" {path}" for path in _PROBE_PATHS)

_state: dict[str, Any] = {"configured": False, "exporting": False, "service": None}


def exporter_endpoints(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The exporters the environment asks for: {"otlp": url, "zipkin": url} (either)."""
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    otlp = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if otlp:
        found["otlp"] = otlp
    zipkin = env.get("OTEL_EXPORTER_ZIPKIN_ENDPOINT")
    if zipkin:
        found["zipkin"] = zipkin
    return found


def configure_tracing(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install the tracer provider of this process (once); True when spans are exported."""
    if _state["configured"]:
        return bool(_state["exporting"])
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    env = os.environ if environ is None else environ
    endpoints = exporter_endpoints(env)
    resource = Resource.create(
        {"service.name": service, "service.instance.id": f"{os.uname().nodename}:{os.getpid()}"}
    )
    exporters: list[SpanExporter] = []
    if "otlp" in endpoints:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter())
    if "zipkin" in endpoints:
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        exporters.append(ZipkinExporter(endpoint=endpoints["zipkin"]))
    if exporters:
        provider = TracerProvider(resource=resource, sampler=_sampler(env))
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        provider = TracerProvider(resource=resource, sampler=ParentBased(root=ALWAYS_OFF))
    trace.set_tracer_provider(provider)
    _state.update(configured=True, exporting=bool(exporters), service=service)
    if exporters:
        _instrument_libraries()
        _log.info("tracing: exporting spans to %s", ", ".join(sorted(endpoints)))
    return bool(exporters)


def _sampler(env: Mapping[str, str]) -> Any:
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_ON,
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
    )

    class NoClientRoots(Sampler):
        """Samples root spans, except CLIENT ones (background SQL and Redis calls)."""

        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Any = None,
            links: Sequence[Any] | None = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            path = attributes.get("url.path") if attributes else None
            if (
                kind is SpanKind.CLIENT
                or name.endswith(_PROBE_SPAN_SUFFIXES)
                or path in _PROBE_PATHS
            ):
                return SamplingResult(Decision.DROP)
            return ALWAYS_ON.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return "NoClientRoots"

    if env.get("OTEL_TRACES_SAMPLER"):
        return None  # the SDK reads it
    return ParentBased(root=NoClientRoots())


def _instrument_libraries() -> None:
    try:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        instrumentor = RedisInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    except Exception as exc:  # an instrumentation must never stop a service
        _log.warning("tracing: Redis instrumentation unavailable: %s", exc)


def is_exporting() -> bool:
    return bool(_state["exporting"])


def reset_for_tests() -> None:
    """Forget the configuration (unit tests that install their own provider)."""
    _state.update(configured=False, exporting=False, service=None)


_tracer_of: dict[str, Any] = {"provider": None, "tracer": None}


def tracer() -> trace.Tracer:
    """The tracer of the current provider, made once per provider (a consumer asks for
    it on every record, and `get_tracer` builds a new one each time)."""
    provider = trace.get_tracer_provider()
    if _tracer_of["provider"] is not provider:
        _tracer_of.update(provider=provider, tracer=provider.get_tracer(TRACER_NAME))
    cached: trace.Tracer = _tracer_of["tracer"]
    return cached


def instrument_app(app: Any) -> None:
    """Server spans for a FastAPI app (the caller's `traceparent` is continued)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=EXCLUDED_PATHS, exclude_spans=["receive", "send"]
    )


def instrument_engine(engine: Any) -> None:
    """SQLAlchemy spans for an (async) engine, when this process exports spans."""
    if not is_exporting():
        return
    try:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        instrumentor = SQLAlchemyInstrumentor()
        options = {"engine": getattr(engine, "sync_engine", engine), "enable_commenter": False}
        if instrumentor.is_instrumented_by_opentelemetry:
            # instrument() works once per process; a further engine is hooked directly
            instrumentor._instrument(**options)  # type: ignore[no-untyped-call]
        else:
            # its declared range ends below SQLAlchemy 2.1, whose engine events it uses as is
            instrumentor.instrument(**options, skip_dep_check=True)
    except Exception as exc:
        _log.warning("tracing: SQLAlchemy instrumentation unavailable: %s", exc)


# --- propagation ------------------------------------------------------------------------


def current_carrier() -> dict[str, str]:
    """The W3C headers (`traceparent`, maybe `tracestate`) of the active span; {} if none."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(carrier: Mapping[str, str] | None) -> Context:
    """A context whose parent is the span the carrier names (the empty context if none)."""
    if not carrier:
        return Context()
    return propagate.extract(dict(carrier), context=Context())


def carrier_of(traceparent: str | None) -> dict[str, str]:
    return {"traceparent": traceparent} if traceparent else {}


def envelope_carrier(envelope: Any) -> dict[str, str]:
    """The carrier of an event envelope (its `traceparent` attribute)."""
    return carrier_of(getattr(envelope, "traceparent", None))


@contextmanager
def attached(carrier: Mapping[str, str] | Context | None) -> Iterator[None]:
    """Make the carrier's span the parent of the spans started in the block."""
    ctx = carrier if isinstance(carrier, Context) else context_from(carrier)
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def span(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A span around the block, child of `parent` (a carrier) or of the active span.
    An exception escaping the block marks it as an error."""
    ctx = context_from(parent) if parent else None
    with tracer().start_as_current_span(
        name, context=ctx, kind=kind, attributes=dict(attributes or {})
    ) as current:
        yield current


def start_span(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Span:
    """A started span (not made current) that the caller ends."""
    ctx = context_from(parent) if parent else None
    return tracer().start_span(name, context=ctx, kind=kind, attributes=dict(attributes or {}))


def carrier_for_span(current: Span) -> dict[str, str]:
    """The W3C headers that name `current` as the parent."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(current, Context()))
    return carrier


def fail_span(current: Span, reason: str) -> None:
    current.set_status(Status(StatusCode.ERROR, reason))


def _kafka_span(
    name: str, kind: SpanKind, topic: str, carrier: Mapping[str, str], attributes: dict[str, str]
) -> Span:
    """A span of one Kafka record, `<name> <topic>`, continuing `carrier`, with the
    OpenTelemetry messaging attributes."""
    return start_span(
        f"{name} {topic}",
        parent=carrier,
        kind=kind,
        attributes={"messaging.system": "kafka", "messaging.destination.name": topic, **attributes},
    )


def producer_span(topic: str, carrier: Mapping[str, str], event_id: str) -> Span:
    attributes = {"messaging.operation.type": "send", "messaging.message.id": event_id}
    return _kafka_span("publish", SpanKind.PRODUCER, topic, carrier, attributes)


def consumer_span(topic: str, carrier: Mapping[str, str], *, event_id: str, group: str) -> Span:
    attributes = {
        "messaging.operation.type": "process",
        "messaging.message.id": event_id,
        "messaging.consumer.group.name": group,
    }
    return _kafka_span("process", SpanKind.CONSUMER, topic, carrier, attributes)


# --- logs -------------------------------------------------------------------------------


def add_trace_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: `trace_id` / `span_id` of the active span, when there is one."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict
