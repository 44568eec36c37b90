"""Alembic environment of draft-api (version table inside schema `draft`)."""
