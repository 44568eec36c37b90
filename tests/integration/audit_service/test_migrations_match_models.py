"""audit-service's migrations build exactly the tables its adapters declare, and its
check constraints allow exactly the domain's values."""

from __future__ import annotations

from typing import get_args

from audit_service.adapters.tables import SCHEMA, metadata
from audit_service.domain.checkpoint import Kind

from tests.schema_drift import assert_detects_drift, enum_checks, mismatches

from .conftest import AuditDb


def test_the_migrated_schema_matches_the_table_metadata(audit_db: AuditDb) -> None:
    assert mismatches(audit_db.superuser, SCHEMA, metadata) == []


def test_the_checkpoint_kinds_are_the_domain_kinds() -> None:
    assert enum_checks(metadata)["ck_checkpoint_kind"] == get_args(Kind) == ("head", "anchor")


def test_the_comparison_reports_drift(audit_db: AuditDb) -> None:
    assert_detects_drift(audit_db.superuser, SCHEMA, metadata, "audit_log")
