"""Kafka machinery: envelope, transactional outbox, inbox, consumer runner, topics."""
