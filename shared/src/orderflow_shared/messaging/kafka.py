"""Kafka helpers: topic creation (never auto-create), producers, a readiness probe.

- `await ensure_topics(bootstrap_servers, partitions, replication)` creates every topic
  in `ALL_TOPICS` that is missing (`erp_connection.changed` compacted); idempotent.
- `make_idempotent_producer(bootstrap_servers, client_id)` -> AIOKafkaProducer with
  `enable_idempotence=True, acks="all"` (not started).
- `await kafka_reachable(bootstrap_servers, timeout=2.0) -> bool` for /readyz.
"""
