"""Alembic environment of schema `export`; the version table lives inside the schema."""

from __future__ import annotations

from alembic import context
from orderflow_shared.db import sync_url
from sqlalchemy import create_engine, pool, text

from export_service.adapters.orm import SCHEMA, make_tables

config = context.config
url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("no database URL: run `python -m export_service migrate`")

engine = create_engine(sync_url(url), poolclass=pool.NullPool)
with engine.connect() as connection:
    found = connection.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": SCHEMA}
    ).scalar()
    if not found:  # the devstack creates it with its owner; a bare database gets it here
        connection.execute(text(f'CREATE SCHEMA "{SCHEMA}"'))
    connection.commit()
    context.configure(
        connection=connection,
        target_metadata=make_tables().metadata,
        version_table_schema=SCHEMA,
        include_schemas=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
