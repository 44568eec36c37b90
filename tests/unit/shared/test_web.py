"""The FastAPI kit: error bodies, body size limit, health and metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from orderflow_shared import web
from orderflow_shared.web import PatchIn, make_service_app
from pydantic import BaseModel, Field


class Connection(BaseModel):
    name: str
    password: str = Field(min_length=12)
    port: int


class Line(BaseModel):
    sku: str
    tags: dict[str, str] = {}


class Order(BaseModel):
    customer_id: str
    lines: list[Line] = []


class SettingsPatch(PatchIn):
    nullable_fields = frozenset({"note"})

    host: str | None = Field(default=None, min_length=1)
    port: int | None = None
    note: str | None = None


class ConnectionPatch(PatchIn):
    name: str | None = None
    settings: SettingsPatch | None = None


def assert_problem(response: object, detail: str) -> None:
    """The response is an RFC 9457 problem document with this `detail`."""
    status = response.status_code  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["title"] and body["detail"] == detail
    assert body["instance"].startswith("/")
    assert body["request_id"] == response.headers["X-Request-ID"]  # type: ignore[attr-defined]


def build_app(checks: dict | None = None) -> FastAPI:  # type: ignore[type-arg]
    app = make_service_app("Test service", "1.0", checks=checks, max_body_bytes=1000)

    @app.post("/connections")
    async def create(body: Connection) -> dict[str, str]:
        return {"name": body.name}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        if item_id == 404:
            raise HTTPException(status_code=404, detail="Item not found")
        return {"id": item_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    @app.post("/orders")
    async def order(body: Order) -> dict[str, str]:
        return {"customer_id": body.customer_id}

    @app.get("/search/{entity}")
    async def search(entity: str, entity_id: str | None = None) -> dict[str, str | None]:
        return {"entity": entity, "entity_id": entity_id}

    @app.patch("/connections/1")
    async def patch(body: ConnectionPatch) -> dict[str, object]:
        return body.model_dump(exclude_unset=True)

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
        return {"received": total}

    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(build_app(), raise_server_exceptions=False) as c:
        yield c


def test_an_http_exception_becomes_a_json_detail(client: TestClient) -> None:
    response = client.get("/items/404")
    assert response.status_code == 404
    assert_problem(response, "Item not found")


def test_an_unknown_route_is_a_json_404(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert_problem(response, "Not Found")


def test_a_validation_error_is_422_without_echoing_the_input(client: TestClient) -> None:
    response = client.post(
        "/connections", json={"name": "erp", "password": "short-secret", "port": "x"}
    )
    assert response.status_code == 422
    detail = response.json()["errors"]
    assert [e["loc"] for e in detail] == [["body", "port"]]
    assert response.json()["detail"].startswith("Invalid input at body.port")
    assert "short-secret" not in response.text
    assert all("input" not in e for e in detail)

    response = client.post("/connections", json={"name": "erp", "password": "tiny", "port": 1})
    assert response.status_code == 422
    assert "tiny" not in response.text


def test_a_malformed_json_body_is_422_not_500(client: TestClient) -> None:
    response = client.post(
        "/connections", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert isinstance(response.json()["errors"], list)
    assert response.headers["content-type"] == "application/problem+json"


def test_an_unexpected_error_is_500_internal_error_without_internals(
    client: TestClient,
) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    request_id = response.headers["X-Request-ID"]
    assert_problem(response, "Internal error")
    assert response.json()["request_id"] == request_id
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text


def test_an_unexpected_error_is_answered_by_the_app_not_re_raised_to_the_server() -> None:
    # raise_server_exceptions=True: anything re-raised to the server would fail here,
    # and a re-raise is what makes uvicorn close the keep-alive connection
    with TestClient(build_app(), raise_server_exceptions=True) as c:
        response = c.get("/boom")
    assert response.status_code == 500
    assert response.json()["detail"] == "Internal error"


def nul_problems(response: object) -> list[tuple[list[object], str]]:
    body = response.json()  # type: ignore[attr-defined]
    return [(e["loc"], e["type"]) for e in body["errors"]]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"customer_id": "C\u0000"}, ["body", "customer_id"]),
        (
            {"customer_id": "C", "lines": [{"sku": "ok"}, {"sku": "S\x00"}]},
            ["body", "lines", 1, "sku"],
        ),
        (
            {"customer_id": "C", "lines": [{"sku": "s", "tags": {"k": "\x00"}}]},
            ["body", "lines", 0, "tags", "k"],
        ),
    ],
)
def test_a_nul_character_in_any_json_string_is_422_naming_the_field(
    client: TestClient, body: dict[str, object], loc: list[object]
) -> None:
    response = client.post("/orders", json=body)
    assert response.status_code == 422
    assert nul_problems(response) == [(loc, "string_unacceptable_character")]
    assert "NUL" in response.json()["errors"][0]["msg"]


def test_a_lone_surrogate_escape_is_422_and_a_surrogate_pair_is_fine(client: TestClient) -> None:
    lone = client.post(
        "/orders",
        content=b'{"customer_id": "C", "lines": [{"sku": "\\udcff"}]}',
        headers={"Content-Type": "application/json"},
    )
    assert lone.status_code == 422
    assert nul_problems(lone) == [(["body", "lines", 0, "sku"], "string_unacceptable_character")]
    assert "surrogate" in lone.json()["errors"][0]["msg"]
    pair = client.post(
        "/orders",
        content=b'{"customer_id": "\\ud83d\\ude00"}',
        headers={"Content-Type": "application/json"},
    )
    assert pair.status_code == 200
    assert pair.json() == {"customer_id": "\U0001f600"}


def test_a_nul_in_a_key_is_422(client: TestClient) -> None:
    response = client.post("/orders", json={"customer_id": "C", "x\u0000": 1})
    assert response.status_code == 422
    assert nul_problems(response) == [(["body"], "key_unacceptable_character")]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"customer_id": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 bytes
        b'{"customer_id": "\xff\xfe"}',
        '{"customer_id": "C"}'.encode("utf-16"),
        b'{"customer_id": "C\x00"}',
    ],
    ids=["utf8 surrogate bytes", "invalid utf8", "utf16", "raw NUL byte"],
)
def test_a_body_that_is_not_utf8_json_is_400(client: TestClient, raw: bytes) -> None:
    response = client.post("/orders", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert_problem(response, "Request body must be JSON encoded as UTF-8")


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul(client: TestClient) -> None:
    response = client.post(
        "/orders",
        content=b'{"customer_id": "C\\\\u0000"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"customer_id": "C\\u0000"}


def test_a_plain_body_is_not_parsed_twice(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_second_parse(*args: object, **kwargs: object) -> object:
        raise AssertionError("the middleware parsed a body without a suspect escape")

    monkeypatch.setattr(web, "_json_text_problems", no_second_parse)
    response = client.post("/orders", json={"customer_id": "C-1", "lines": [{"sku": "é"}]})
    assert response.status_code == 200


def test_deeply_nested_json_with_a_suspect_escape_is_a_4xx_not_a_500() -> None:
    app = make_service_app("Deep", "1.0", max_body_bytes=1_000_000)

    @app.post("/orders")
    async def order(body: Order) -> dict[str, str]:
        return {"customer_id": body.customer_id}

    raw = b'{"customer_id": "\\u0000", "lines": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.post("/orders", content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text


def test_a_nul_in_a_query_or_path_parameter_is_422_naming_it(client: TestClient) -> None:
    query = client.get("/search/drafts?entity_id=%00")
    assert query.status_code == 422
    assert nul_problems(query) == [(["query", "entity_id"], "string_unacceptable_character")]
    path = client.get("/search/a%00b")
    assert path.status_code == 422
    assert nul_problems(path) == [(["path", "entity"], "string_unacceptable_character")]
    fine = client.get("/search/drafts?entity_id=abc")
    assert fine.json() == {"entity": "drafts", "entity_id": "abc"}


def test_a_patch_null_is_422_where_null_means_nothing(client: TestClient) -> None:
    for body, loc in [
        ({"settings": {"host": None}}, ["body", "settings", "host"]),
        ({"settings": {"port": None}}, ["body", "settings", "port"]),
        ({"settings": None}, ["body", "settings"]),
        ({"name": None}, ["body", "name"]),
    ]:
        response = client.patch("/connections/1", json=body)
        assert response.status_code == 422, body
        assert [(e["loc"], e["type"]) for e in response.json()["errors"]] == [
            (loc, "null_not_allowed")
        ]
    allowed = client.patch("/connections/1", json={"settings": {"note": None, "host": "h"}})
    assert allowed.status_code == 200
    assert allowed.json() == {"settings": {"note": None, "host": "h"}}


def test_the_patch_schema_says_which_fields_take_null(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    settings = schemas["SettingsPatch"]["properties"]
    assert settings["host"]["type"] == "string" and "anyOf" not in settings["host"]
    assert {"type": "null"} in settings["note"]["anyOf"]
    assert schemas["ConnectionPatch"]["properties"]["settings"] == {
        "$ref": "#/components/schemas/SettingsPatch"
    }


def test_a_body_larger_than_the_limit_is_413_by_content_length(client: TestClient) -> None:
    response = client.post("/raw", content=b"x" * 1001)
    assert response.status_code == 413
    assert_problem(response, "Request body larger than 1000 bytes")
    assert client.post("/raw", content=b"x" * 1000).json() == {"received": 1000}


def test_a_streamed_body_larger_than_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b"y" * 300

    response = client.post("/raw", content=chunks())
    assert response.status_code == 413
    assert "detail" in response.json()


def test_a_streamed_json_body_larger_than_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(5):
            yield b"n" * 300
        yield b'", "password": "0123456789abc", "port": 1}'

    response = client.post(
        "/connections", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_a_bad_content_length_is_400(client: TestClient) -> None:
    response = client.post("/raw", content=b"abc", headers={"Content-Length": "lots"})
    assert response.status_code == 400
    assert_problem(response, "Invalid Content-Length header")


def test_livez_is_ok_without_checking_dependencies() -> None:
    async def broken() -> bool:
        raise ConnectionError

    with TestClient(build_app({"db": broken})) as c:
        assert c.get("/livez").json() == {"status": "ok"}


def test_readyz_reports_each_check_and_is_503_when_one_fails() -> None:
    async def ok() -> bool:
        return True

    async def down() -> bool:
        return False

    async def raising() -> bool:
        raise ConnectionError("refused")

    with TestClient(build_app({"db": ok, "kafka": down, "redis": raising})) as c:
        response = c.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"db": "ok", "kafka": "fail", "redis": "fail"},
    }


def test_readyz_reads_checks_from_app_state_when_none_are_given() -> None:
    app = build_app()

    async def ok() -> bool:
        return True

    app.state.health_checks = {"db": ok}
    with TestClient(app) as c:
        response = c.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"db": "ok"}}


def test_metrics_are_labelled_by_route_template(client: TestClient) -> None:
    client.get("/items/7")
    client.get("/items/8")
    text = client.get("/metrics").text
    assert 'route="/items/{item_id}"' in text
    assert 'route="/items/7"' not in text
    assert "orderflow_http_request_duration_seconds_bucket" in text


def test_the_openapi_document_is_served(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert "/connections" in response.json()["paths"]


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    generated = client.get("/items/1").headers["X-Request-ID"]
    assert len(generated) == 36
    offered = client.get("/items/1", headers={"X-Request-ID": "abc-123"})
    assert offered.headers["X-Request-ID"] == "abc-123"
    hostile = client.get("/items/1", headers={"X-Request-ID": "a b\tc" * 50})
    assert hostile.headers["X-Request-ID"] != "a b\tc" * 50


def test_an_internal_error_names_the_callers_request_id(client: TestClient) -> None:
    response = client.get("/boom", headers={"X-Request-ID": "trace-42"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "trace-42"
