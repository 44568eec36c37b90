"""Auth, tenancy and hostile input: clear 4xx with `detail`, never 500, nothing written."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest


def token(api: Any, secret: str | None = None, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "sub": "user-1",
        "org_id": api.org,
        "roles": ["operator", "approver", "viewer"],
        "iss": "orderflow",
        "aud": "orderflow",
        "iat": now,
        "exp": now + 600,
    }
    body.update(claims)
    return jwt.encode(body, secret or api.infra.jwt_secret, algorithm="HS256")


def unsigned(api: Any) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = jwt.decode(token(api), options={"verify_signature": False})
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def bad_tokens(api: Any) -> dict[str, str | None]:
    return {
        "missing": None,
        "garbage": "not-a-jwt",
        "expired": token(api, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
        "wrong signature": token(api, secret="another-secret-that-is-long-enough-0123456789"),
        "alg none": unsigned(api),
        "wrong audience": token(api, aud="someone-else"),
        "wrong issuer": token(api, iss="evil"),
    }


async def test_bad_tokens_are_401_on_every_route(api: Any) -> None:
    draft_id = await api.ready()
    routes = [
        ("GET", "/draft-orders"),
        ("GET", f"/draft-orders/{draft_id}"),
        ("POST", "/draft-orders"),
        ("POST", f"/draft-orders/{draft_id}/approve"),
        ("POST", f"/draft-orders/{draft_id}/push"),
    ]
    for name, value in bad_tokens(api).items():
        headers = {} if value is None else {"Authorization": f"Bearer {value}"}
        for method, path in routes:
            response = await api.client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (name, path, response.text)
            assert response.json()["detail"], name
            assert response.headers["www-authenticate"] == "Bearer"
    status = api.db.scalar("SELECT status FROM draft.draft_order WHERE id = %s", (draft_id,))
    assert status == "READY"


async def test_a_missing_role_is_403(api: Any) -> None:
    draft_id = await api.ready()
    viewer = api.headers(("viewer",))
    operator = api.headers(("operator",))
    create = await api.client.post("/draft-orders", json={"customer_id": "C"}, headers=viewer)
    assert create.status_code == 403 and "operator" in create.json()["detail"]
    approve = await api.client.post(f"/draft-orders/{draft_id}/approve", headers=operator)
    assert approve.status_code == 403
    push = await api.client.post(f"/draft-orders/{draft_id}/push", headers=viewer)
    assert push.status_code == 403
    admin_only = await api.client.get("/draft-orders", headers=api.headers(("admin",)))
    assert admin_only.status_code == 200


async def test_another_orgs_draft_is_404_never_403(api: Any) -> None:
    draft_id = await api.ready()
    stranger = api.headers(org="someone-else")
    for method, path in [
        ("GET", f"/draft-orders/{draft_id}"),
        ("PATCH", f"/draft-orders/{draft_id}"),
        ("POST", f"/draft-orders/{draft_id}/validate"),
        ("POST", f"/draft-orders/{draft_id}/approve"),
        ("POST", f"/draft-orders/{draft_id}/push"),
        ("POST", f"/draft-orders/{draft_id}/retry-push"),
    ]:
        response = await api.client.request(method, path, headers=stranger, json={})
        assert response.status_code == 404, (path, response.text)
        assert response.json() == {"detail": "Draft order not found"}
    listed = await api.client.get("/draft-orders", headers=stranger)
    assert draft_id not in {d["id"] for d in listed.json()["items"]}
    assert api.db.scalar("SELECT status FROM draft.draft_order WHERE id = %s", (draft_id,)) == (
        "READY"
    )


def drafts_in_org(api: Any) -> int:
    return int(
        api.db.scalar("SELECT count(*) FROM draft.draft_order WHERE org_id = %s", (api.org,))
    )


LINE = {"sku": "S", "quantity": 1, "unit": "EA", "unit_price": 1, "currency": "EUR"}


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("negative quantity", {"customer_id": "C", "lines": [{**LINE, "quantity": -1}]}),
        ("negative price", {"customer_id": "C", "lines": [{**LINE, "unit_price": "-0.01"}]}),
        ("quantity not a number", {"customer_id": "C", "lines": [{**LINE, "quantity": "x"}]}),
        ("NaN quantity", {"customer_id": "C", "lines": [{**LINE, "quantity": "NaN"}]}),
        ("too many digits", {"customer_id": "C", "lines": [{**LINE, "quantity": "1" * 40}]}),
        ("unknown field", {"customer_id": "C", "is_admin": True}),
        ("unknown line field", {"customer_id": "C", "lines": [{**LINE, "discount": 5}]}),
        ("huge string", {"customer_id": "C" * 100_000}),
        ("bad currency", {"customer_id": "C", "lines": [{**LINE, "currency": "euro"}]}),
        ("missing customer", {"lines": [LINE]}),
        ("not an object", ["customer_id"]),
        ("too many lines", {"customer_id": "C", "lines": [LINE] * 1001}),
    ],
)
async def test_invalid_bodies_are_422_with_detail_and_write_nothing(
    api: Any, name: str, body: Any
) -> None:
    response = await api.client.post("/draft-orders", json=body, headers=api.headers())
    assert response.status_code == 422, (name, response.text)
    assert response.json()["detail"]
    assert (
        api.db.scalar("SELECT count(*) FROM draft.draft_order WHERE org_id = %s", (api.org,)) == 0
    )


async def test_transport_level_bad_input_is_4xx_and_writes_nothing(api: Any) -> None:
    headers = api.headers()
    oversized = await api.client.post(
        "/draft-orders",
        content=b'{"customer_id": "' + b"C" * 2_000_000 + b'"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert oversized.status_code == 413 and oversized.json()["detail"]

    form = await api.client.post("/draft-orders", data={"customer_id": "C"}, headers=headers)
    assert form.status_code == 415
    assert form.json() == {"detail": "Content-Type must be application/json"}

    broken = await api.client.post(
        "/draft-orders",
        content=b'{"customer_id": ',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert broken.status_code == 422 and broken.json()["detail"]

    for path in ("/draft-orders/not-a-uuid", "/draft-orders/123/approve"):
        response = await api.client.request(
            "GET" if path.count("/") == 2 else "POST", path, headers=headers
        )
        assert response.status_code == 422 and response.json()["detail"], path

    for params in ({"status": "BOGUS"}, {"limit": 0}, {"limit": 10_000}, {"offset": -1}):
        listed = await api.client.get("/draft-orders", params=params, headers=headers)
        assert listed.status_code == 422, params

    unknown = await api.client.get(f"/draft-orders/{uuid.uuid4()}", headers=headers)
    assert unknown.status_code == 404
    assert (
        api.db.scalar("SELECT count(*) FROM draft.draft_order WHERE org_id = %s", (api.org,)) == 0
    )


async def test_edits_are_refused_once_approved(api: Any) -> None:
    draft_id = await api.approved()
    response = await api.client.patch(
        f"/draft-orders/{draft_id}", json={"customer_id": "C-2"}, headers=api.headers()
    )
    assert response.status_code == 409
    assert "NEW, NEEDS_REVIEW or READY" in response.json()["detail"]
