"""Alembic runs this: online migrations of schema `draft` with its own version table."""

from __future__ import annotations

from alembic import context
from orderflow_shared.db import sync_url
from sqlalchemy import create_engine, pool, text

from draft_api.adapters.orm import SCHEMA, build_tables

config = context.config
url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("no database URL: run `python -m draft_api migrate`")

engine = create_engine(sync_url(url), poolclass=pool.NullPool)
with engine.connect() as connection:
    exists = connection.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": SCHEMA}
    ).scalar()
    if not exists:
        connection.execute(text(f'CREATE SCHEMA "{SCHEMA}"'))
    connection.commit()  # alembic must start its own transactions
    context.configure(
        connection=connection,
        target_metadata=build_tables().metadata,
        version_table_schema=SCHEMA,
        include_schemas=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
