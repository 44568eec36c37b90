"""export-service's migrations build exactly the tables its adapters declare, and its
check constraints allow exactly the domain enums' values."""

from __future__ import annotations

from typing import Any

from export_service.adapters.orm import SCHEMA, make_tables
from export_service.domain.circuit import CircuitState
from export_service.domain.connection import ConnectorType
from export_service.domain.export import ExportStatus

from tests.schema_drift import assert_detects_drift, enum_checks, mismatches

from .conftest import make_settings


def test_the_migrated_schema_matches_the_table_metadata(export_env: Any) -> None:
    url = make_settings(export_env).migrations_url
    assert mismatches(url, SCHEMA, make_tables().metadata) == []


def test_the_checks_are_the_domain_enums() -> None:
    checks = enum_checks(make_tables().metadata)
    assert checks["ck_erp_export_status"] == tuple(ExportStatus)
    assert checks["ck_erp_connection_type"] == tuple(ConnectorType)
    assert checks["ck_erp_connection_circuit_state"] == tuple(CircuitState)


def test_the_comparison_reports_drift(export_env: Any) -> None:
    url = make_settings(export_env).migrations_url
    assert_detects_drift(url, SCHEMA, make_tables().metadata, "erp_export")
