"""HTTP contracts standard clients rely on, through the real gateway (issue 12): method
semantics, request ids, problem documents (the services' and nginx's own), Location
and 415 on export-service, ETag/If-Match on connections, the docs pages and specs."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.flow import ALL_ROLES, Flow

pytestmark = pytest.mark.stack

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}


@pytest.fixture
def admin(stack: Any) -> httpx.Client:
    org = f"http-{uuid.uuid4().hex[:8]}"
    token = stack.token(roles=ALL_ROLES, org=org)
    with httpx.Client(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {token}"}, timeout=15
    ) as client:
        yield client


def _is_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body: dict[str, Any] = response.json()
    assert PROBLEM_KEYS <= body.keys(), body
    assert body["status"] == status and body["type"] == "about:blank"
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/draft-orders", "GET, HEAD, OPTIONS, POST"),
        (f"/draft-orders/{uuid.uuid4()}", "GET, HEAD, OPTIONS, PATCH"),
        ("/erp-connections", "GET, HEAD, OPTIONS, POST"),
        (f"/erp-connections/{uuid.uuid4()}", "GET, HEAD, OPTIONS, PATCH"),
        ("/audit-log", "GET, HEAD, OPTIONS"),
        ("/_svc/export-service/livez", "GET, HEAD, OPTIONS"),
    ],
)
def test_405_allow_head_and_options_through_the_gateway(
    admin: httpx.Client, path: str, allow: str
) -> None:
    refused = admin.delete(path)
    _is_problem(refused, 405)
    assert refused.headers["allow"] == allow
    options = admin.options(path)
    assert (options.status_code, options.headers["allow"], options.content) == (204, allow, b"")
    head = admin.head(path)
    got = admin.get(path)
    assert head.status_code == got.status_code, (head.status_code, got.status_code)
    assert head.content == b""


def test_livez_answers_head_and_options_on_every_service(stack: Any) -> None:
    for url in stack.service_urls.values():
        assert httpx.head(f"{url}/livez", timeout=10).status_code == 200
        options = httpx.options(f"{url}/livez", timeout=10)
        assert (options.status_code, options.headers["allow"]) == (204, "GET, HEAD, OPTIONS")


def test_the_gateway_passes_a_sane_request_id_and_makes_a_uuid_otherwise(
    admin: httpx.Client,
) -> None:
    mine = admin.get("/draft-orders", headers={"X-Request-ID": "desk-42.retry_1"})
    assert mine.headers["x-request-id"] == "desk-42.retry_1"
    for bad in ("has space", "x" * 129, "semi;colon"):
        replaced = admin.get("/draft-orders", headers={"X-Request-ID": bad})
        assert UUID.match(replaced.headers["x-request-id"]), replaced.headers["x-request-id"]
    fresh = {admin.get("/audit-log").headers["x-request-id"] for _ in range(3)}
    assert len(fresh) == 3 and all(UUID.match(value) for value in fresh)
    refused = admin.get("/audit-log", params={"limit": 0}, headers={"X-Request-ID": "mine-1"})
    assert _is_problem(refused, 422)["request_id"] == "mine-1"


def test_nginx_own_errors_are_problem_documents_with_the_request_id(stack: Any) -> None:
    url = stack.gateway_url
    too_large = httpx.post(
        f"{url}/draft-orders", content=b"x" * (1024 * 1024 + 10), headers={"X-Request-ID": "big-1"}
    )
    body = _is_problem(too_large, 413)
    assert body["request_id"] == "big-1" and body["instance"] == "/draft-orders"
    huge = httpx.get(f"{url}/draft-orders", headers={"X-Big": "y" * 20000}, timeout=10)
    assert _is_problem(huge, 431)["detail"] == "Request header fields too large"
    long_uri = httpx.get(f"{url}/draft-orders?q={'z' * 20000}", timeout=10)
    assert _is_problem(long_uri, 414)["title"] == "URI Too Long"


def test_a_problem_document_from_each_service_names_status_and_instance(
    admin: httpx.Client,
) -> None:
    missing = f"/erp-connections/{uuid.uuid4()}"
    body = _is_problem(admin.get(missing), 404)
    assert (body["title"], body["instance"]) == ("Not Found", missing)
    invalid = _is_problem(admin.post("/draft-orders", json={"lines": "no"}), 422)
    assert {tuple(e["loc"])[:2] for e in invalid["errors"]} >= {("body", "customer_id")}
    audit = _is_problem(admin.get("/audit-log", params={"to": "0.5"}), 422)
    assert audit["errors"][0]["loc"] == ["query", "to"]


def test_export_service_answers_415_and_a_201_with_location_and_etag(
    stack: Any, admin: httpx.Client
) -> None:
    wrong = admin.post(
        "/erp-connections", content=b"name=x", headers={"Content-Type": "text/plain"}
    )
    assert _is_problem(wrong, 415)["detail"] == "Content-Type must be application/json"
    flow = Flow(stack, connector=False)
    try:
        created = flow.http.post(
            "/erp-connections",
            json={
                "name": "CSV drop",
                "connector_type": "sftp_dropzone",
                "sftp": {
                    "host": "127.0.0.1",
                    "port": 22,
                    "username": "nobody",
                    "remote_directory": "/inbox",
                    "host_key_fingerprint": "SHA256:" + "A" * 43,
                    "password": "pw",
                },
            },
        )
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        assert location == f"/erp-connections/{created.json()['id']}"
        etag = created.headers["etag"]
        got = flow.http.get(location)
        assert got.headers["etag"] == etag
        stale = flow.http.patch(location, json={"name": "B"}, headers={"If-Match": '"1"'})
        _is_problem(stale, 412)
        assert flow.http.get(location).json()["name"] == "CSV drop"
        renamed = flow.http.patch(location, json={"name": "B"}, headers={"If-Match": etag})
        assert renamed.status_code == 200, renamed.text
        assert renamed.headers["etag"] != etag
        again = flow.http.post(f"{location}/deactivate", headers={"If-Match": etag})
        _is_problem(again, 412)
        done = flow.http.post(
            f"{location}/deactivate", headers={"If-Match": renamed.headers["etag"]}
        )
        assert done.status_code == 200, done.text
    finally:
        flow.close()


def test_each_service_spec_has_a_server_and_its_docs_point_at_it(stack: Any) -> None:
    gateway = stack.gateway_url
    for service, path in (
        ("draft-api", "/draft-orders"),
        ("export-service", "/erp-connections"),
        ("audit-service", "/audit-log"),
    ):
        page = httpx.get(f"{gateway}/_svc/{service}/docs", timeout=10)
        assert page.status_code == 200
        assert "url: 'openapi.json'" in page.text  # relative: /_svc/<service>/openapi.json
        assert "docs-static/swagger-ui-bundle.js" in page.text and "cdn." not in page.text
        spec = httpx.get(f"{gateway}/_svc/{service}/openapi.json", timeout=10).json()
        assert path in spec["paths"], service
        assert spec["servers"][0]["url"] == "/"
        asset = httpx.get(f"{gateway}/_svc/{service}/docs-static/swagger-ui.css", timeout=10)
        assert asset.status_code == 200
        for item in spec["paths"].values():
            for method, op in item.items():
                # a body that is not UTF-8 JSON (400), too large (413), not JSON (415)
                if "requestBody" in op:
                    assert {"400", "413", "415"} <= op["responses"].keys(), (method, op)
                for code, response in op["responses"].items():
                    if code.startswith(("4", "5")):
                        assert list(response["content"]) == ["application/problem+json"]


def test_the_gateway_docs_page_lists_every_service_operation(stack: Any) -> None:
    page = httpx.get(f"{stack.gateway_url}/docs", timeout=10)
    assert page.status_code == 200
    text = page.text
    for expected in (
        "POST /draft-orders/{draft_id}/approve",
        "POST /draft-orders/{draft_id}/push",
        "POST /draft-orders/{draft_id}/retry-push",
        "POST /erp-connections",
        "GET /audit-log",
        "/_svc/export-service/openapi.json",
        "/_svc/audit-service/openapi.json",
    ):
        assert expected in text, expected
    assert "error occurred" not in text
    assert "https://" not in text
