"""Idempotency-Key rules (IETF httpapi idempotency-key draft, Stripe-like semantics)."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from draft_api.domain import errors

_KEY = re.compile(r"^[A-Za-z0-9_.:~+/=-]{1,255}$")


class Operation(StrEnum):
    PUSH = "push"
    RETRY_PUSH = "retry-push"


def parse_key(raw: str) -> str:
    """The key as sent (an sf-string may arrive quoted); IdempotencyKeyInvalid if malformed."""
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not _KEY.fullmatch(key):
        raise errors.IdempotencyKeyInvalid()
    return key


def fingerprint(operation: Operation, draft_id: uuid.UUID) -> str:
    """What makes two requests 'the same request' (push/retry-push carry no body)."""
    return hashlib.sha256(f"{operation.value}:{draft_id}".encode()).hexdigest()


@dataclass(frozen=True)
class IdempotencyRecord:
    org_id: str
    key: str
    operation: Operation
    draft_id: uuid.UUID
    fingerprint: str
    erp_export_id: uuid.UUID
    created_at: datetime
    expires_at: datetime

    def matches(self, operation: Operation, draft_id: uuid.UUID) -> bool:
        return self.fingerprint == fingerprint(operation, draft_id)

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at
