"""GET /audit-log: org-scoped, filters, cursor paging, and clear 4xx for bad input."""

from __future__ import annotations

import uuid

import pytest

from .conftest import produce, wait_for


@pytest.fixture(scope="module")
def two_orgs(audit_service, audit_db, samples) -> dict[str, list]:
    flows = {f"org-{uuid.uuid4().hex[:10]}": None for _ in range(2)}
    for org in flows:
        flows[org] = samples.flow(org, actor=f"actor-of-{org}")
        produce(audit_db.servers.kafka, flows[org])
    for org in flows:
        wait_for(lambda org=org: audit_db.count(org) == 8, f"entries of {org}")
    return flows  # type: ignore[return-value]


def test_entries_of_a_draft_come_oldest_first_as_in_the_quickstart(audit_service, two_orgs):
    org, envelopes = next(iter(two_orgs.items()))
    draft_id = envelopes[0].subject
    response = audit_service.get("/audit-log", org=org, entity_id=draft_id)
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list)
    assert [e["action"] for e in body] == [
        "DRAFT_CREATED",
        "DRAFT_VALIDATED",
        "DRAFT_APPROVED",
        "DRAFT_PUSHED",
        "EXPORT_FAILED",
        "DRAFT_PUSH_RETRIED",
        "EXPORT_SENT",
    ]
    first = body[0]
    assert first["actor_user_id"] == f"actor-of-{org}"
    assert first["created_at"] == "2025-12-27T10:30:00Z"
    assert first["entity_type"] == "draft_order"
    assert first["event_id"] == str(envelopes[0].id)
    assert first["data"]["customer_id"] == "C-1001"


def test_another_orgs_entries_are_invisible(audit_service, two_orgs):
    (org_a, flow_a), (org_b, flow_b) = two_orgs.items()
    mine = audit_service.get("/audit-log", org=org_a, limit=500).json()
    assert {e["event_id"] for e in mine} == {str(e.id) for e in flow_a}
    theirs = audit_service.get("/audit-log", org=org_a, entity_id=flow_b[0].subject)
    assert theirs.status_code == 200
    assert theirs.json() == []
    by_actor = audit_service.get("/audit-log", org=org_a, actor_user_id=f"actor-of-{org_b}")
    assert by_actor.json() == []


def test_filters_by_action_actor_and_time(audit_service, two_orgs):
    org, _ = next(iter(two_orgs.items()))
    approved = audit_service.get("/audit-log", org=org, action="DRAFT_APPROVED").json()
    assert [e["action"] for e in approved] == ["DRAFT_APPROVED"]
    window = audit_service.get(
        "/audit-log", org=org, **{"from": "2025-12-27T10:30:02Z", "to": "2025-12-27T10:30:03Z"}
    ).json()
    assert [e["action"] for e in window] == ["DRAFT_APPROVED", "DRAFT_PUSHED"]
    naive = audit_service.get("/audit-log", org=org, **{"from": "2025-12-27T10:30:07"}).json()
    assert [e["action"] for e in naive] == ["ERP_CONNECTION_CHANGED"]


def test_pages_are_linked_by_an_opaque_cursor(audit_service, two_orgs):
    org, envelopes = next(iter(two_orgs.items()))
    seen: list[str] = []
    params: dict[str, object] = {"limit": 3}
    pages = 0
    while True:
        response = audit_service.get("/audit-log", org=org, **params)
        assert response.status_code == 200
        seen += [e["event_id"] for e in response.json()]
        pages += 1
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            assert "Link" not in response.headers
            break
        assert response.headers["Link"] == f'</audit-log?limit=3&cursor={cursor}>; rel="next"'
        params = {"limit": 3, "cursor": cursor}
    assert pages == 3
    assert seen == [str(e.id) for e in envelopes]


@pytest.mark.parametrize(
    "params",
    [
        {"from": "yesterday"},
        {"to": "2025-13-45T00:00:00Z"},
        {"to": "0.5"},
        {"from": "1764583200"},
        {"cursor": "eyJ0IjogMX0"},
        {"limit": 0},
        {"limit": 501},
        {"limit": "ten"},
        {"cursor": "not-a-cursor"},
        {"cursor": "x" * 600},
    ],
)
def test_bad_filters_are_422_with_a_detail(audit_service, params):
    response = audit_service.get("/audit-log", org="org-x", **params)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_from_after_to_is_an_empty_page(audit_service, two_orgs):
    org = next(iter(two_orgs))
    assert audit_service.get("/audit-log", org=org).json()  # the org has entries
    response = audit_service.get(
        "/audit-log", org=org, **{"from": "2999-12-28T00:00:00Z", "to": "1999-12-27T00:00:00Z"}
    )
    assert (response.status_code, response.json()) == (200, [])


def test_no_token_is_401_and_any_role_may_read(audit_service):
    import httpx

    assert httpx.get(f"{audit_service.url}/audit-log", timeout=10).status_code == 401
    for role in ("viewer", "operator", "approver", "admin"):
        assert audit_service.get("/audit-log", org="org-x", roles=(role,)).status_code == 200


def test_health_and_docs(audit_service):
    import httpx

    assert httpx.get(f"{audit_service.url}/livez", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(f"{audit_service.url}/readyz", timeout=10).json()
    assert ready["checks"] == {"database": "ok", "kafka": "ok"}
    paths = httpx.get(f"{audit_service.url}/openapi.json", timeout=10).json()["paths"]
    assert {"/audit-log", "/audit-log/verify"} <= set(paths)


@pytest.mark.parametrize("name", ["entity_id", "action", "actor_user_id"])
def test_a_nul_in_a_filter_is_422_naming_it_and_the_connection_stays_usable(audit_service, name):
    import httpx
    from orderflow_shared.auth import mint_token

    token = mint_token(audit_service.env["JWT_SECRET"], sub="a", org_id="org-x", roles=["viewer"])
    headers = {"Authorization": f"Bearer {token}"}

    with httpx.Client(base_url=audit_service.url, headers=headers, timeout=10) as client:
        bad = client.get("/audit-log", params={name: "x\x00y"})
        assert bad.status_code == 422, bad.text
        assert bad.json()["errors"][0]["loc"] == ["query", name]
        assert "NUL" in bad.json()["errors"][0]["msg"]
        assert bad.headers.get("connection") != "close"
        good = client.get("/audit-log", params={name: "x"})
        assert good.status_code == 200 and good.json() == []
        # percent-encoded surrogate bytes decode to U+FFFD, never to a lone surrogate
        odd = client.get(f"/audit-log?{name}=%ED%A0%80")
        assert odd.status_code == 200 and odd.json() == []


def test_loose_jwt_claims_are_401_invalid_token(audit_service):
    import time

    import httpx
    import jwt

    now = int(time.time())
    base = {
        "sub": "a",
        "org_id": "org-x",
        "roles": ["viewer"],
        "iss": "orderflow",
        "aud": "orderflow",
        "iat": now,
        "exp": now + 600,
    }
    hostile = {
        "NUL in org_id": {"org_id": "org-x\u0000"},
        "roles a string": {"roles": "viewer"},
        "exp a string": {"exp": str(now + 600)},
        "exp 10**30": {"exp": 10**30},
        "no iat": {"iat": None},
    }
    for name, change in hostile.items():
        claims = {k: v for k, v in {**base, **change}.items() if v is not None}
        token = jwt.encode(claims, audit_service.env["JWT_SECRET"], algorithm="HS256")
        response = httpx.get(
            f"{audit_service.url}/audit-log",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 401, (name, response.text)
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
