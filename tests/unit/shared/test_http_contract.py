"""HTTP semantics of every service's app (orderflow_shared.web): 405 with the whole
Allow, HEAD, OPTIONS, CORS, problem documents, conditional requests, the docs pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI, Response
from fastapi.testclient import TestClient
from orderflow_shared.preconditions import (
    Preconditions,
    entity_tag,
    http_date,
    parse_http_date,
    parse_if_match,
)
from orderflow_shared.web import PreconditionsDep, make_service_app, set_validators
from pydantic import BaseModel

CHANGED = datetime(2026, 11, 26, 10, 0, 0, 500_000, tzinfo=UTC)


class ThingIn(BaseModel):
    name: str


def build_app(**options: object) -> FastAPI:
    app = make_service_app("things", "1.0", service="things", **options)  # type: ignore[arg-type]

    @app.get("/things", summary="List the things")
    async def list_things() -> list[str]:
        return ["a"]

    @app.post("/things", status_code=201, summary="Make a thing")
    async def make_thing(body: ThingIn) -> dict[str, str]:
        return {"name": body.name}

    @app.get("/things/{thing_id}", summary="One thing")
    async def get_thing(thing_id: str, response: Response) -> dict[str, str]:
        set_validators(response, 7, CHANGED)
        return {"id": thing_id}

    @app.patch("/things/{thing_id}")
    async def patch_thing(thing_id: str, expect: PreconditionsDep) -> dict[str, bool]:
        return {"holds": expect.holds(entity_tag(7), CHANGED)}

    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(build_app()) as c:
        yield c


def test_a_405_lists_every_method_of_the_path(client: TestClient) -> None:
    refused = client.delete("/things")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 405
    item = client.put("/things/1")
    assert item.status_code == 405
    assert item.headers["allow"] == "GET, HEAD, OPTIONS, PATCH"


def test_head_works_wherever_get_does_and_sends_no_body(client: TestClient) -> None:
    got = client.get("/things/42")
    head = client.head("/things/42")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]
    assert head.headers["etag"] == got.headers["etag"] == '"7"'
    assert client.head("/livez").status_code == 200
    assert client.head("/readyz").status_code == 200


def test_options_answers_204_with_allow_everywhere(client: TestClient) -> None:
    for path, allow in [
        ("/livez", "GET, HEAD, OPTIONS"),
        ("/things", "GET, HEAD, OPTIONS, POST"),
        ("/things/1", "GET, HEAD, OPTIONS, PATCH"),
    ]:
        answered = client.options(path)
        assert answered.status_code == 204, path
        assert answered.headers["allow"] == allow
        assert answered.content == b""
    assert client.options("/nowhere").status_code == 404


def test_cors_is_off_by_default() -> None:
    with TestClient(build_app()) as c:
        response = c.get("/things", headers={"Origin": "https://desk.example"})
        preflight = c.options(
            "/things",
            headers={"Origin": "https://desk.example", "Access-Control-Request-Method": "POST"},
        )
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allows_only_the_listed_origins() -> None:
    app = build_app(cors_allowed_origins="https://desk.example, https://other.example")
    with TestClient(app) as c:
        allowed = c.options(
            "/things",
            headers={
                "Origin": "https://desk.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, if-match",
            },
        )
        simple = c.get("/things/1", headers={"Origin": "https://other.example"})
        foreign = c.options(
            "/things",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://desk.example"
    assert "if-match" in allowed.headers["access-control-allow-headers"].lower()
    assert simple.headers["access-control-allow-origin"] == "https://other.example"
    assert "etag" in simple.headers["access-control-expose-headers"].lower()
    assert foreign.status_code == 400
    assert "access-control-allow-origin" not in foreign.headers


def test_a_validation_error_is_a_problem_with_an_errors_list(client: TestClient) -> None:
    refused = client.post("/things", json={"nom": "x"}, headers={"X-Request-ID": "req-1"})
    assert refused.status_code == 422
    body = refused.json()
    assert refused.headers["content-type"] == "application/problem+json"
    assert body["type"] == "about:blank"
    assert body["title"] == "Unprocessable Content"
    assert body["instance"] == "/things"
    assert body["request_id"] == "req-1" == refused.headers["x-request-id"]
    assert isinstance(body["detail"], str) and body["detail"].startswith("Invalid input at body")
    assert {tuple(e["loc"]) for e in body["errors"]} >= {("body", "name")}


def test_the_spec_declares_errors_as_problem_documents_and_a_server(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["servers"] == [
        {"url": "/", "description": "The gateway (or the service itself): same paths"}
    ]
    unprocessable = spec["paths"]["/things"]["post"]["responses"]["422"]["content"]
    assert list(unprocessable) == ["application/problem+json"]


@pytest.mark.parametrize(
    ("headers", "holds"),
    [
        ({}, True),
        ({"If-Match": '"7"'}, True),
        ({"If-Match": '"3", "7"'}, True),
        ({"If-Match": "*"}, True),
        ({"If-Match": '"bogus"'}, False),
        ({"If-Match": 'W/"7"'}, False),
        ({"If-Match": "7"}, False),
        ({"If-Unmodified-Since": "Thu, 26 Nov 2026 10:00:00 GMT"}, True),
        ({"If-Unmodified-Since": "Thu, 26 Nov 2026 09:59:59 GMT"}, False),
        ({"If-Unmodified-Since": "not a date"}, True),
        ({"If-Match": '"7"', "If-Unmodified-Since": "Thu, 26 Nov 2020 09:00:00 GMT"}, True),
    ],
)
def test_preconditions_follow_rfc_9110(
    client: TestClient, headers: dict[str, str], holds: bool
) -> None:
    answered = client.patch("/things/1", headers=headers)
    assert answered.status_code == 200
    assert answered.json() == {"holds": holds}


def test_a_required_precondition_is_428_when_missing() -> None:
    with TestClient(build_app(require_preconditions=True)) as c:
        missing = c.patch("/things/1")
        given = c.patch("/things/1", headers={"If-Match": '"7"'})
    assert missing.status_code == 428
    assert missing.json()["status"] == 428 and "If-Match" in missing.json()["detail"]
    assert given.status_code == 200


def test_validators_and_dates_round_trip() -> None:
    assert entity_tag(3) == '"3"'
    assert parse_if_match('"a", W/"b" ,"c,d"') == ('"a"', 'W/"b"', '"c,d"')
    assert parse_if_match(None) is None
    assert http_date(CHANGED) == "Thu, 26 Nov 2026 10:00:00 GMT"
    assert parse_http_date(http_date(CHANGED)) == CHANGED.replace(microsecond=0)
    assert parse_http_date("0.5") is None
    assert Preconditions(if_match=("*",)).holds('"1"', None)


def test_docs_serve_swagger_ui_from_the_installed_files(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    assert "docs-static/swagger-ui-bundle.js" in page.text
    assert "url: 'openapi.json'" in page.text  # relative: right behind /_svc/<service>/
    script = client.get("/docs-static/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert client.get("/docs-static/swagger-ui.css").status_code == 200
    operations = client.get("/docs/operations").text
    assert "<code>POST /things</code> &mdash; Make a thing" in operations
    assert "List the things" in page.text  # listed in the page itself (noscript)
