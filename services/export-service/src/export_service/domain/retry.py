"""Retry policy: capped exponential backoff with jitter, bounded by a time budget.

An export is retried on transient errors until its deadline (`deliver_by`, set when
the push is recorded: creation time + `deadline`); the attempt count bounds nothing.
The last attempt is scheduled at the deadline at the latest, so a dropzone that comes
back just before the deadline still gets the file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from orderflow_shared.timing import backoff

DEFAULT_DEADLINE = timedelta(hours=24)


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 1.0
    max_seconds: float = 300.0
    deadline: timedelta = DEFAULT_DEADLINE

    def __post_init__(self) -> None:
        if self.base_seconds <= 0 or self.max_seconds < self.base_seconds:
            raise ValueError("need 0 < base_seconds <= max_seconds")
        if self.deadline <= timedelta(0):
            raise ValueError("deadline must be positive")

    def deliver_by(self, created_at: datetime) -> datetime:
        """When an export recorded at `created_at` stops being retried."""
        return created_at + self.deadline

    def ceiling(self, attempts_made: int) -> float:
        """Upper bound of the delay after the given number of failed attempts."""
        return backoff(attempts_made, base=self.base_seconds, cap=self.max_seconds, jitter=False)

    def delay(self, attempts_made: int, rng: random.Random | None = None) -> timedelta:
        """Delay before the next attempt: uniform in [ceiling/2, ceiling] (jittered)."""
        seconds = backoff(attempts_made, base=self.base_seconds, cap=self.max_seconds, rng=rng)
        return timedelta(seconds=seconds)

    def next_attempt(
        self,
        attempts_made: int,
        now: datetime,
        deliver_by: datetime | None,
        rng: random.Random | None = None,
    ) -> datetime | None:
        """When to try again after a transient failure; None when the deadline passed."""
        if deliver_by is not None and now >= deliver_by:
            return None
        later = now + self.delay(attempts_made, rng)
        return min(later, deliver_by) if deliver_by is not None else later
