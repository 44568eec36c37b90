"""Infrastructure: Postgres (SQLAlchemy) and Kafka."""
