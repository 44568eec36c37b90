"""Alembic runs this: online migrations of schema `draft` with its own version table."""

from orderflow_shared.service_cli import run_migrations

from draft_api.adapters.orm import SCHEMA, build_tables

run_migrations(SCHEMA, build_tables().metadata)
