"""Alembic runs this: migrations of schema `audit`, version table inside it (the schema
belongs to audit_owner, which the devstack creates)."""

from orderflow_shared.service_cli import run_migrations

from audit_service.adapters.tables import SCHEMA, metadata

run_migrations(SCHEMA, metadata, create_schema=False)
