"""Prometheus metrics of draft-api's own use cases (HTTP, outbox and consumer metrics
come from orderflow_shared)."""

from __future__ import annotations

import re

from prometheus_client import Counter

from draft_api.domain.errors import DomainError

PUSHES = Counter(
    "orderflow_draft_pushes_total",
    "Push and retry-push requests by result (accepted = a new export requested, replayed ="
    " answered from an earlier request with the same Idempotency-Key, refused = a domain"
    " error) and, for refusals, the error's kind.",
    ["operation", "result", "reason"],
)

_WORD = re.compile(r"(?<!^)(?=[A-Z])")


def refusal_reason(error: DomainError) -> str:
    """`DraftNotApproved` -> `draft_not_approved` (a fixed set: one per error class)."""
    return _WORD.sub("_", type(error).__name__).lower()


def count_push(operation: str, *, replayed: bool) -> None:
    PUSHES.labels(operation, "replayed" if replayed else "accepted", "").inc()


def count_refused_push(operation: str, error: DomainError) -> None:
    PUSHES.labels(operation, "refused", refusal_reason(error)).inc()
