"""Prometheus metrics of deliveries (registered once per process, on first use)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from prometheus_client import Counter, Gauge, Histogram


@dataclass(frozen=True)
class ExportMetrics:
    outcomes: Counter
    failures: Counter
    attempt_seconds: Histogram
    end_to_end_seconds: Histogram
    in_flight: Gauge
    recorded: Counter
    circuits: Gauge
    finished: Counter
    backlog: Gauge
    backlog_age_seconds: Gauge


@cache
def export_metrics() -> ExportMetrics:
    return ExportMetrics(
        outcomes=Counter(
            "orderflow_export_attempts_total",
            "Delivery attempts by outcome (SENT, PENDING = waiting for the dropzone, FAILED,"
            " lost_lease).",
            ["outcome"],
        ),
        failures=Counter(
            "orderflow_export_failures_total",
            "Failed delivery attempts by error code.",
            ["code"],
        ),
        attempt_seconds=Histogram(
            "orderflow_export_attempt_seconds",
            "Duration of one delivery attempt (render, store, upload, record).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        ),
        end_to_end_seconds=Histogram(
            "orderflow_export_delivery_latency_seconds",
            "From recording the push request to SENT.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300),
        ),
        in_flight=Gauge("orderflow_export_deliveries_in_flight", "Deliveries running now."),
        recorded=Counter(
            "orderflow_export_push_requests_total", "Push requests recorded as exports."
        ),
        circuits=Gauge(
            "orderflow_export_circuits",
            "ERP connections by delivery circuit state (closed, open, half_open); a"
            " connection whose deliveries never failed counts as closed only once it has.",
            ["state"],
        ),
        finished=Counter(
            "orderflow_export_exports_finished_total",
            "Exports that reached a final status (SENT, FAILED), with the error code of a"
            " FAILED one (empty for SENT); a deadline that passed while waiting counts too.",
            ["status", "code"],
        ),
        backlog=Gauge(
            "orderflow_export_backlog_exports",
            "Exports not yet final by status (PENDING, DELIVERING), read from Postgres every"
            " 5 s (every export-service process reports the same figures).",
            ["status"],
        ),
        backlog_age_seconds=Gauge(
            "orderflow_export_backlog_oldest_age_seconds",
            "Age of the oldest export not yet final, by status (0 when there is none).",
            ["status"],
        ),
    )
