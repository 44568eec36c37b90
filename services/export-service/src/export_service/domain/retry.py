"""Retry policy: exponential backoff with full jitter, bounded by a number of attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_seconds <= 0 or self.max_seconds < self.base_seconds:
            raise ValueError("need 0 < base_seconds <= max_seconds")

    def may_retry(self, attempts_made: int) -> bool:
        """True while another attempt is allowed after `attempts_made` attempts."""
        return attempts_made < self.max_attempts

    def ceiling(self, attempts_made: int) -> float:
        """Upper bound of the delay after the given number of failed attempts."""
        exponent = max(attempts_made - 1, 0)
        # Cap the exponent before computing 2**n so a large count cannot overflow.
        return min(self.max_seconds, self.base_seconds * 2.0 ** min(exponent, 62))

    def delay(self, attempts_made: int, rng: random.Random | None = None) -> timedelta:
        """Delay before the next attempt: uniform in [ceiling/2, ceiling] (jittered)."""
        ceiling = self.ceiling(attempts_made)
        draw = (rng or random).random()
        return timedelta(seconds=ceiling / 2 + draw * ceiling / 2)
