"""Waiting, in one place: the retry backoff and the stoppable sleep.

Every loop that retries after a failure waits `backoff(...)` seconds, and every wait
that must end early on shutdown is `sleep_or_stop(...)`. A unit test
(tests/unit/shared/test_timing.py) keeps other modules from writing their own.
"""

from __future__ import annotations

import asyncio
import random

#: 2**62 times any sane base is far past any cap; capping the exponent keeps the
#: arithmetic finite for any failure count.
_MAX_EXPONENT = 62


def backoff(
    failures: int,
    *,
    base: float,
    cap: float,
    jitter: bool = True,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after `failures` consecutive failures (1 = the first).

    Capped exponential: `base` after the first failure, doubled after each further
    one, never more than `cap`. With `jitter` (the default) the wait is drawn
    uniformly from [half, whole] of that, so many clients that failed together do
    not retry together; `rng` makes the draw reproducible."""
    exponent = min(max(failures - 1, 0), _MAX_EXPONENT)
    ceiling = min(cap, base * 2.0**exponent)
    if not jitter:
        return ceiling
    draw = (rng or random).random()
    return ceiling / 2 + draw * ceiling / 2


async def sleep_or_stop(
    stop: asyncio.Event, seconds: float | None, *, wake: asyncio.Event | None = None
) -> bool:
    """Wait `seconds` (None: without a limit), or less: until `stop` is set, or `wake`
    is. True when `stop` is set (the caller should stop)."""
    if stop.is_set():
        return True
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return stop.is_set()
