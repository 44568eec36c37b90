"""Kafka helpers: topic creation (never auto-create), producers, a readiness probe.

- `await ensure_topics(bootstrap_servers, partitions, replication)` creates every topic
  in `ALL_TOPICS` that is missing (`erp_connection.changed` compacted); idempotent.
- `make_idempotent_producer(bootstrap_servers, client_id)` -> AIOKafkaProducer with
  `enable_idempotence=True, acks="all"` (not started).
- `await kafka_reachable(bootstrap_servers, timeout=2.0) -> bool` for /readyz.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient

from orderflow_shared.contracts.topics import ALL_TOPICS, COMPACTED_TOPICS

_log = logging.getLogger(__name__)

_NO_ERROR = 0
_TOPIC_ALREADY_EXISTS = 36


class TopicCreationError(RuntimeError):
    """The broker refused to create a topic (other than because it already exists)."""


def topic_configs(topic: str) -> dict[str, str]:
    """Per-topic settings: compacted topics keep the latest record per key."""
    if topic in COMPACTED_TOPICS:
        return {"cleanup.policy": "compact"}
    return {}


async def ensure_topics(
    bootstrap_servers: str,
    partitions: int,
    replication: int,
    topics: Iterable[str] = ALL_TOPICS,
    *,
    client_id: str = "orderflow-topics",
    timeout: float = 30.0,  # noqa: ASYNC109
) -> list[str]:
    """Create the missing topics and wait until the broker lists them; returns those created."""
    wanted = [str(t) for t in topics]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id=client_id)
    await admin.start()
    try:
        async with asyncio.timeout(timeout):
            existing = set(await admin.list_topics())
            missing = [t for t in wanted if t not in existing]
            if missing:
                response = await admin.create_topics(
                    [
                        NewTopic(
                            name=t,
                            num_partitions=partitions,
                            replication_factor=replication,
                            topic_configs=topic_configs(t),
                        )
                        for t in missing
                    ]
                )
                for entry in response.topic_errors:
                    name, code = entry[0], entry[1]
                    if code not in (_NO_ERROR, _TOPIC_ALREADY_EXISTS):
                        message = entry[2] if len(entry) > 2 else ""
                        raise TopicCreationError(f"cannot create {name}: error {code} {message}")
            await _wait_listed(admin, set(wanted))
    finally:
        await admin.close()
    if missing:
        _log.info("created topics %s", ", ".join(missing))
    return missing


async def _wait_listed(admin: AIOKafkaAdminClient, wanted: set[str]) -> None:
    """Poll the broker's metadata until every wanted topic is listed."""
    while True:
        if wanted <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.2)


def make_idempotent_producer(
    bootstrap_servers: str, client_id: str, **kwargs: object
) -> AIOKafkaProducer:
    """A producer whose retries never duplicate or reorder records within a partition."""
    options: dict[str, object] = {
        "request_timeout_ms": 15_000,
        "linger_ms": 5,
        "retry_backoff_ms": 200,
    }
    options.update(kwargs)
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        **options,
    )


async def kafka_reachable(bootstrap_servers: str, timeout: float = 2.0) -> bool:  # noqa: ASYNC109
    """True when a broker answers a metadata request within `timeout` seconds."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap_servers,
        client_id="orderflow-readyz",
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        async with asyncio.timeout(timeout):
            await client.bootstrap()
    except Exception as exc:  # any failure means "not ready"
        _log.warning("kafka not reachable: %s", type(exc).__name__)
        return False
    finally:
        try:
            await client.close()
        except Exception:  # noqa: S110 - closing a half-open client must not mask the answer
            pass
    return True
