"""audit_log is append-only for the service's role, and tampering is caught."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import produce, wait_for


@pytest.fixture(scope="module")
def org_with_entries(audit_service, audit_db, samples) -> str:
    org = f"org-{uuid.uuid4().hex[:10]}"
    produce(audit_db.servers.kafka, samples.flow(org))
    wait_for(lambda: audit_db.count(org) == len(samples.EXPECTED_ACTIONS), "the flow's entries")
    return org


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.audit_log SET action = 'DRAFT_APPROVED' WHERE org_id = %s",
        "DELETE FROM audit.audit_log WHERE org_id = %s",
        "TRUNCATE audit.audit_log",
    ],
)
def test_the_service_role_cannot_change_history(audit_db, org_with_entries, statement):
    params = [org_with_entries] if "%s" in statement else None
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        audit_db.rows(statement, params, as_url=audit_db.runtime_url)
    assert audit_db.count(org_with_entries) == 8


def test_not_even_the_owner_updates_a_row_by_accident(audit_db, org_with_entries):
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        audit_db.rows(
            "UPDATE audit.audit_log SET actor_user_id = 'x' WHERE org_id = %s",
            [org_with_entries],
            as_url=audit_db.owner_url,
        )


def test_the_service_role_may_insert_and_select_only(audit_db):
    role = audit_db.rows("SELECT current_user", as_url=audit_db.runtime_url)[0][0]
    granted = audit_db.rows(
        "SELECT privilege_type FROM information_schema.role_table_grants"
        " WHERE grantee = %s AND table_schema = 'audit' AND table_name = 'audit_log'",
        [role],
    )
    assert sorted(p for (p,) in granted) == ["INSERT", "SELECT"]


def _verify(audit_db, org: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit_service", "verify", "--org", org],
        env={"DATABASE_URL": audit_db.runtime_url, "ORDERFLOW_ENV": "test"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _verification_failures(audit_service) -> float:
    """orderflow_audit_verification_failures_total of the HTTP process (it verifies)."""
    text = httpx.get(f"{audit_service.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "orderflow_audit_verification_failures_total":
                return sample.value
    raise AssertionError("orderflow_audit_verification_failures_total is not exposed")


def test_a_row_altered_by_a_superuser_is_caught_by_the_verifier(
    audit_service, audit_db, org_with_entries
):
    assert _verify(audit_db, org_with_entries).returncode == 0
    failures_before = _verification_failures(audit_service)
    admin = audit_service.get("/audit-log/verify", org=org_with_entries, roles=("admin",))
    assert admin.json() == {"ok": True, "entries_checked": 8, "first_broken": None}
    assert _verification_failures(audit_service) == failures_before

    target = audit_db.rows(
        "SELECT id FROM audit.audit_log WHERE org_id = %s AND action = 'DRAFT_APPROVED'",
        [org_with_entries],
    )[0][0]
    # A superuser can switch the append-only trigger off; the chain still tells.
    with psycopg.connect(audit_db.superuser, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE audit.audit_log SET actor_user_id = 'mallory' WHERE id = %s", [target])

    result = _verify(audit_db, org_with_entries)
    assert result.returncode == 1
    assert f'"id": {target}' in result.stdout
    assert "content" in result.stdout

    admin = audit_service.get("/audit-log/verify", org=org_with_entries, roles=("admin",))
    body = admin.json()
    assert body["ok"] is False
    assert body["first_broken"]["id"] == target
    # the broken link is counted for the alert OrderFlowAuditVerificationFailed
    assert _verification_failures(audit_service) == failures_before + 1


def test_verify_is_for_admins_only(audit_service, org_with_entries):
    response = audit_service.get("/audit-log/verify", org=org_with_entries, roles=("viewer",))
    assert response.status_code == 403
    assert "admin" in response.json()["detail"]
