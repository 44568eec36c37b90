"""Ways into draft-api: HTTP routes, the Kafka consumer, the CLI."""
