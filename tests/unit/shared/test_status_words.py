"""One status vocabulary: both services use the shared ExportStatus, and each check
constraint's values, as the newest migration writes them, are the domain enum's."""

from __future__ import annotations

import ast
import re
from enum import StrEnum
from pathlib import Path

import pytest
from draft_api.domain import model as draft_model
from export_service.domain import export as export_model
from export_service.domain.circuit import CircuitState
from export_service.domain.connection import ConnectorType
from orderflow_shared.contracts.export_status import ExportStatus

ROOT = Path(__file__).resolve().parents[3]
VERSIONS = {
    "draft-api": ROOT / "services/draft-api/src/draft_api/migrations/versions",
    "export-service": ROOT / "services/export-service/src/export_service/migrations/versions",
}
IN_LIST = re.compile(r"^\s*(\w+)\s+IN\s+\((.*)\)\s*$", re.DOTALL)


def _strings(node: ast.AST) -> list[str]:
    return [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def newest_checks(versions: Path) -> dict[str, tuple[str, ...]]:
    """ck name -> values of the newest `upgrade()` that creates it, as written."""
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted(versions.glob("*.py")):
        tree = ast.parse(path.read_text())
        upgrade = next(
            n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"
        )
        for call in ast.walk(upgrade):
            if not isinstance(call, ast.Call):
                continue
            strings = _strings(call)
            names = [s for s in strings if s.startswith("ck_")]
            lists = [m for s in strings if (m := IN_LIST.match(s))]
            if len(names) == 1 and len(lists) == 1:
                found[names[0]] = tuple(re.findall(r"'([^']*)'", lists[0].group(2)))
    return found


def test_both_services_use_the_shared_export_status() -> None:
    assert draft_model.ExportStatus is ExportStatus
    assert export_model.ExportStatus is ExportStatus
    assert [s.value for s in ExportStatus] == ["PENDING", "DELIVERING", "SENT", "FAILED"]


def test_the_reader_finds_each_form_of_check() -> None:
    checks = newest_checks(VERSIONS["draft-api"])
    assert set(checks) >= {"ck_draft_order_status", "ck_push_attempt_status"}


@pytest.mark.parametrize(
    ("service", "check", "enum"),
    [
        ("draft-api", "ck_draft_order_status", draft_model.DraftStatus),
        ("draft-api", "ck_push_attempt_status", ExportStatus),
        ("export-service", "ck_erp_export_status", ExportStatus),
        ("export-service", "ck_erp_connection_type", ConnectorType),
        ("export-service", "ck_erp_connection_circuit_state", CircuitState),
    ],
)
def test_the_migration_literal_is_the_domain_enum(
    service: str, check: str, enum: type[StrEnum]
) -> None:
    assert newest_checks(VERSIONS[service])[check] == tuple(e.value for e in enum)
