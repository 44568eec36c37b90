"""Infrastructure behind the ports: Postgres (SQLAlchemy), the outbox, Redis."""
