"""Ways in: the Kafka ingest, the HTTP API and the CLI."""
