"""Kafka helpers: client options, topic creation (never auto-create), producers, a probe.

Every aiokafka client a service creates takes its connection keyword arguments from
one place, so that each connects as its own principal:

- `client_options(settings) -> dict` : `bootstrap_servers`, `security_protocol` and,
  with SASL, `sasl_mechanism`, `sasl_plain_username`, `sasl_plain_password` (and an
  `ssl_context` with SASL_SSL). Pass it as `**options` to any aiokafka client, or as
  `kafka=` to the helpers below.
- `sasl_options(bootstrap_servers, username=..., password=...)`: the same from parts
  (tools and tests that connect as a given principal).
- `await ensure_topics(kafka, partitions, replication)` creates every topic in
  `ALL_TOPICS` that is missing (`erp_connection.changed` compacted); idempotent.
- `make_idempotent_producer(kafka, client_id)` -> AIOKafkaProducer with
  `enable_idempotence=True, acks="all"` (not started).
- `await kafka_reachable(kafka, timeout=2.0) -> bool` for /readyz (a wrong password
  counts as unreachable).

The options hold the password in clear (aiokafka wants a str): never log them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.helpers import create_ssl_context

from orderflow_shared.contracts.topics import ALL_TOPICS, COMPACTED_TOPICS

if TYPE_CHECKING:
    from orderflow_shared.settings import ServiceSettings

#: Keyword arguments of an aiokafka client: where the brokers are and how to log in.
KafkaOptions: TypeAlias = Mapping[str, Any]

_log = logging.getLogger(__name__)

_NO_ERROR = 0
_TOPIC_ALREADY_EXISTS = 36


def sasl_options(
    bootstrap_servers: str,
    *,
    username: str,
    password: str,
    security_protocol: str = "SASL_PLAINTEXT",
    mechanism: str = "SCRAM-SHA-512",
    ssl_cafile: str | None = None,
) -> dict[str, Any]:
    """Connection options of a client that logs in as `username`."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "security_protocol": security_protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }
    if security_protocol == "SASL_SSL":
        options["ssl_context"] = create_ssl_context(cafile=ssl_cafile)
    return options


def client_options(settings: ServiceSettings) -> dict[str, Any]:
    """Connection options of every Kafka client of a service: its own principal."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {"bootstrap_servers": settings.kafka_bootstrap_servers}
    if settings.kafka_username is None or settings.kafka_password is None:
        # ServiceSettings refuses this combination; a hand-built object may not
        raise ValueError("KAFKA_USERNAME and KAFKA_PASSWORD are required with SASL")
    return sasl_options(
        settings.kafka_bootstrap_servers,
        username=settings.kafka_username,
        password=settings.kafka_password.get_secret_value(),
        security_protocol=settings.kafka_security_protocol,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_cafile=settings.kafka_ssl_cafile,
    )


class TopicCreationError(RuntimeError):
    """The broker refused to create a topic (other than because it already exists)."""


def topic_configs(topic: str) -> dict[str, str]:
    """Per-topic settings: compacted topics keep the latest record per key."""
    if topic in COMPACTED_TOPICS:
        return {"cleanup.policy": "compact"}
    return {}


async def ensure_topics(
    kafka: KafkaOptions,
    partitions: int,
    replication: int,
    topics: Iterable[str] = ALL_TOPICS,
    *,
    client_id: str = "orderflow-topics",
    timeout: float = 30.0,  # noqa: ASYNC109
) -> list[str]:
    """Create the missing topics and wait until the broker lists them; returns those created."""
    wanted = [str(t) for t in topics]
    admin = AIOKafkaAdminClient(**{**kafka, "client_id": client_id})
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
    kafka: KafkaOptions, client_id: str, **kwargs: object
) -> AIOKafkaProducer:
    """A producer whose retries never duplicate or reorder records within a partition."""
    options: dict[str, object] = {
        "request_timeout_ms": 15_000,
        "linger_ms": 5,
        "retry_backoff_ms": 200,
    }
    options.update(kafka)
    options.update(kwargs)
    return AIOKafkaProducer(
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        **options,
    )


async def kafka_reachable(kafka: KafkaOptions, timeout: float = 2.0) -> bool:  # noqa: ASYNC109
    """True when a broker lets this principal in and answers a metadata request within
    `timeout` seconds."""
    client = AIOKafkaClient(
        **{**kafka, "client_id": "orderflow-readyz", "request_timeout_ms": int(timeout * 1000)}
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
