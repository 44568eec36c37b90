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
            challenge = response.headers["www-authenticate"]
            if value is None:
                assert challenge == "Bearer"
            else:
                assert challenge.startswith('Bearer error="invalid_token"'), (name, challenge)
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
        assert response.json()["detail"] == "Draft order not found"
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
    assert form.json()["detail"] == "Content-Type must be application/json"

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


# --- hostile input: NUL, lone surrogates, loose JWT claims, nulls, blank keys --------


def raw_json(api: Any) -> dict[str, str]:
    return {**api.headers(), "Content-Type": "application/json"}


LINE_JSON = '{"sku": "S", "quantity": 1, "unit": "EA", "unit_price": 1, "currency": "EUR"}'


@pytest.mark.parametrize(
    ("name", "raw", "loc"),
    [
        ("NUL in customer_id", '{"customer_id": "C\\u0000"}', ["body", "customer_id"]),
        (
            "NUL in external_ref",
            '{"customer_id": "C", "external_ref": "PO\\u0000"}',
            ["body", "external_ref"],
        ),
        (
            "NUL in sku",
            '{"customer_id": "C", "lines": [' + LINE_JSON.replace('"S"', '"S\\u0000"') + "]}",
            ["body", "lines", 0, "sku"],
        ),
        (
            "lone surrogate in description",
            '{"customer_id": "C", "lines": ['
            + LINE_JSON.replace('"sku"', '"description": "\\ud800", "sku"')
            + "]}",
            ["body", "lines", 0, "description"],
        ),
        ("lone surrogate in customer_id", '{"customer_id": "\\udfff"}', ["body", "customer_id"]),
    ],
)
async def test_nul_and_lone_surrogates_are_422_naming_the_field_and_write_nothing(
    api: Any, name: str, raw: str, loc: list[Any]
) -> None:
    response = await api.client.post("/draft-orders", content=raw.encode(), headers=raw_json(api))
    assert response.status_code == 422, (name, response.text)
    assert [e["loc"] for e in response.json()["errors"]] == [loc]
    assert drafts_in_org(api) == 0


async def test_a_nul_in_an_edit_is_422_and_changes_nothing(api: Any) -> None:
    draft = await api.create()
    response = await api.client.patch(
        f"/draft-orders/{draft['id']}",
        content=b'{"customer_id": "C\\u0000"}',
        headers=raw_json(api),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "customer_id"]
    assert (
        api.db.scalar("SELECT customer_id FROM draft.draft_order WHERE id = %s", (draft["id"],))
        == (draft["customer_id"])
    )


async def test_a_body_that_is_not_utf8_is_400(api: Any) -> None:
    for raw in (b'{"customer_id": "\xff"}', b'{"customer_id": "\xed\xa0\x80"}'):
        response = await api.client.post("/draft-orders", content=raw, headers=raw_json(api))
        assert response.status_code == 400, raw
        assert response.json()["detail"] == "Request body must be JSON encoded as UTF-8"
    assert drafts_in_org(api) == 0


async def test_a_nul_in_a_path_or_query_parameter_is_422(api: Any) -> None:
    path = await api.client.get("/draft-orders/%00", headers=api.headers())
    assert path.status_code == 422
    assert path.json()["errors"][0]["loc"] == ["path", "draft_id"]
    query = await api.client.get("/draft-orders?status=%00", headers=api.headers())
    assert query.status_code == 422
    assert query.json()["errors"][0]["loc"] == ["query", "status"]


async def test_explicit_nulls_in_an_edit_are_422_except_external_ref(api: Any) -> None:
    draft = await api.create()
    url = f"/draft-orders/{draft['id']}"
    for body, field in (({"customer_id": None}, "customer_id"), ({"lines": None}, "lines")):
        response = await api.client.patch(url, json=body, headers=api.headers())
        assert response.status_code == 422, body
        assert response.json()["errors"][0]["loc"] == ["body", field]
        assert response.json()["errors"][0]["type"] == "null_not_allowed"
    cleared = await api.client.patch(url, json={"external_ref": None}, headers=api.headers())
    assert cleared.status_code == 200
    assert cleared.json()["external_ref"] is None
    assert cleared.json()["customer_id"] == draft["customer_id"]


def hostile_tokens(api: Any) -> dict[str, str]:
    now = int(time.time())
    return {
        "roles a string": token(api, roles="admin"),
        "exp a string": token(api, exp=str(now + 600)),
        "no iat": jwt.encode(
            {
                "sub": "user-1",
                "org_id": api.org,
                "roles": ["operator"],
                "iss": "orderflow",
                "aud": "orderflow",
                "exp": now + 600,
            },
            api.infra.jwt_secret,
            algorithm="HS256",
        ),
        "exp 10**30": token(api, exp=10**30),
        "NUL in org_id": token(api, org_id=f"{api.org}\u0000x"),
        "200 KB": token(api, padding="p" * 200_000),
    }


async def test_loosely_typed_or_oversized_tokens_are_401_invalid_token(api: Any) -> None:
    for name, value in hostile_tokens(api).items():
        for method, path in (("GET", "/draft-orders"), ("POST", "/draft-orders")):
            response = await api.client.request(
                method, path, headers={"Authorization": f"Bearer {value}"}, json={}
            )
            assert response.status_code == 401, (name, response.text[:300])
            assert response.json()["detail"], name
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith('Bearer error="invalid_token"'), name
    assert drafts_in_org(api) == 0


async def test_a_blank_idempotency_key_is_400_and_a_missing_one_still_pushes(api: Any) -> None:
    api.connect_erp()
    draft_id = await api.approved()
    for blank in ("", "   "):
        response = await api.push(draft_id, key=blank)
        assert response.status_code == 400, repr(blank)
        assert "Idempotency-Key" in response.json()["detail"]
    assert api.attempts(draft_id) == 0
    pushed = await api.push(draft_id)
    assert pushed.status_code == 202, pushed.text


# --- lists are summaries ----------------------------------------------------------------


async def test_a_list_item_is_a_summary_with_counts_and_totals_and_no_lines(api: Any) -> None:
    mixed = [
        {"sku": "A", "quantity": 3, "unit": "EA", "unit_price": "9.50", "currency": "EUR"},
        {"sku": "B", "quantity": "0.5", "unit": "KGM", "unit_price": "4", "currency": "EUR"},
        {"sku": "C", "quantity": 2, "unit": "EA", "unit_price": "1.25", "currency": "USD"},
    ]
    draft = await api.create(lines=mixed)
    await api.client.post(f"/draft-orders/{draft['id']}/validate", headers=api.headers())
    full = (await api.client.get(f"/draft-orders/{draft['id']}", headers=api.headers())).json()
    listed = await api.client.get("/draft-orders", headers=api.headers())
    assert listed.status_code == 200
    (item,) = listed.json()["items"]
    assert "lines" not in item
    assert item["line_count"] == 3
    assert {k: float(v) for k, v in item["totals"].items()} == {"EUR": 30.5, "USD": 2.5}
    assert float(item["total"]) == float(full["total"]) == 33.0
    assert item["issue_count"] == len(full["validation_issues"]) >= 1
    assert item["validation_issues"] == full["validation_issues"]
    kept = set(full) - {"lines"}
    assert {k: item[k] for k in kept if k != "total"} == {k: full[k] for k in kept if k != "total"}
    assert len(full["lines"]) == 3


async def test_a_page_of_drafts_with_1000_lines_each_is_small_and_loads_no_lines(
    api: Any,
) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    lines = [
        {
            "sku": f"SKU-{n:04d}",
            "description": "A rather long description of the widget " * 5,
            "quantity": 1,
            "unit": "EA",
            "unit_price": "1.00",
            "currency": "EUR",
        }
        for n in range(1000)
    ]
    for _ in range(5):
        await api.create(lines=lines)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        listed = await api.client.get("/draft-orders", headers=api.headers())
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [i["line_count"] for i in items] == [1000] * 5
    assert all(i["totals"] == {"EUR": "1000.00"} for i in items)
    assert len(listed.content) < 10_000, len(listed.content)
    line_reads = [s for s in statements if "draft_order_line" in s]
    assert line_reads and all("GROUP BY" in s and "sku" not in s for s in line_reads)
    detail = await api.client.get(f"/draft-orders/{items[0]['id']}", headers=api.headers())
    assert len(detail.json()["lines"]) == 1000
    assert len(detail.content) > 100 * len(listed.content) / 5
