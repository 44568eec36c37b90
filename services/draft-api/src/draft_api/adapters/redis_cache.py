"""Redis in front of the Postgres idempotency rows: fast replays and an in-flight lock.

Keys (`idempotency:{draft_id}:{key}`) hold either an in-flight marker (short TTL)
or the export id as a plain string (TTL `IDEMPOTENCY_TTL_HOURS`). Any Redis error
answers UNAVAILABLE/does nothing: Postgres alone then keeps the push correct.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from draft_api.service_layer.ports import CacheEntry, CacheState

_log = logging.getLogger(__name__)

KEY_PREFIX = "idempotency"
IN_FLIGHT_PREFIX = "in-flight:"

# Delete the key only while it still holds this request's marker.
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def cache_key(draft_id: uuid.UUID, key: str) -> str:
    return f"{KEY_PREFIX}:{draft_id}:{key}"


class RedisIdempotencyCache:
    def __init__(
        self,
        redis: Redis[Any],
        *,
        ttl: timedelta,
        in_flight_ttl: timedelta = timedelta(seconds=30),
    ) -> None:
        self._redis = redis
        self._ttl = int(ttl.total_seconds())
        self._in_flight_ttl = int(in_flight_ttl.total_seconds())

    async def acquire(self, draft_id: uuid.UUID, key: str) -> CacheEntry:
        name = cache_key(draft_id, key)
        try:
            for _ in range(3):
                token = f"{IN_FLIGHT_PREFIX}{uuid.uuid4()}"
                if await self._redis.set(name, token, nx=True, ex=self._in_flight_ttl):
                    return CacheEntry(CacheState.ACQUIRED, token=token)
                value = _text(await self._redis.get(name))
                if value is None:
                    continue  # released between SET and GET: try again
                if value.startswith(IN_FLIGHT_PREFIX):
                    return CacheEntry(CacheState.IN_FLIGHT)
                try:
                    return CacheEntry(CacheState.DONE, export_id=uuid.UUID(value))
                except ValueError:
                    _log.warning("unreadable idempotency cache value for draft %s", draft_id)
                    return CacheEntry(CacheState.UNAVAILABLE)
        except (RedisError, OSError) as exc:
            _log.warning("idempotency cache unavailable: %s", type(exc).__name__)
        return CacheEntry(CacheState.UNAVAILABLE)

    async def remember(self, draft_id: uuid.UUID, key: str, export_id: uuid.UUID) -> None:
        try:
            await self._redis.set(cache_key(draft_id, key), str(export_id), ex=self._ttl)
        except (RedisError, OSError) as exc:
            _log.warning("idempotency cache not updated: %s", type(exc).__name__)

    async def release(self, draft_id: uuid.UUID, key: str, token: str) -> None:
        try:
            name = cache_key(draft_id, key)
            await self._redis.eval(_RELEASE_SCRIPT, 1, name, token)  # type: ignore[no-untyped-call]
        except (RedisError, OSError) as exc:
            _log.warning("idempotency in-flight marker not released: %s", type(exc).__name__)


def _text(value: bytes | str | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return value
