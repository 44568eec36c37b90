"""draft-api's migrations build exactly the tables its adapters declare, and its
check constraints allow exactly the domain enums' values."""

from __future__ import annotations

from typing import Any

from draft_api.adapters.orm import SCHEMA, build_tables
from draft_api.domain.model import DraftStatus, ExportStatus

from tests.schema_drift import assert_detects_drift, enum_checks, mismatches


def test_the_migrated_schema_matches_the_table_metadata(db: Any) -> None:
    assert mismatches(db.url, SCHEMA, build_tables().metadata) == []


def test_the_status_checks_are_the_domain_enums(db: Any) -> None:
    checks = enum_checks(build_tables().metadata)
    assert checks["ck_draft_order_status"] == tuple(DraftStatus)
    assert checks["ck_push_attempt_status"] == tuple(ExportStatus)


def test_the_comparison_reports_drift(db: Any) -> None:
    assert_detects_drift(db.url, SCHEMA, build_tables().metadata, "draft_order")
