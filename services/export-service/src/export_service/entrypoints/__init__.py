"""Entrypoints: HTTP routes, the Kafka consumer, the delivery worker, the CLI."""
