"""Alembic environment of schema `export`; the version table lives inside the schema."""

from orderflow_shared.service_cli import run_migrations

from export_service.adapters.orm import SCHEMA, make_tables

run_migrations(SCHEMA, make_tables().metadata)
