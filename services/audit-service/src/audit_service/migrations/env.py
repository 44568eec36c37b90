"""Alembic runs this: migrations of schema `audit`, version table inside it."""

from __future__ import annotations

from alembic import context
from orderflow_shared.db import sync_url
from sqlalchemy import create_engine, pool

from audit_service.adapters.tables import SCHEMA, metadata

config = context.config
url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("no database URL: run `python -m audit_service migrate`")

engine = create_engine(sync_url(url), poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=SCHEMA,
        include_schemas=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
