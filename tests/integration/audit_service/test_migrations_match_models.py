"""audit-service's migrations build exactly the tables its adapters declare."""

from __future__ import annotations

from audit_service.adapters.tables import SCHEMA, metadata

from tests.schema_drift import assert_detects_drift, mismatches

from .conftest import AuditDb


def test_the_migrated_schema_matches_the_table_metadata(audit_db: AuditDb) -> None:
    assert mismatches(audit_db.superuser, SCHEMA, metadata) == []


def test_the_comparison_reports_drift(audit_db: AuditDb) -> None:
    assert_detects_drift(audit_db.superuser, SCHEMA, metadata, "audit_log")
