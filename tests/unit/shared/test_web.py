"""The FastAPI kit: error bodies, body size limit, health and metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from orderflow_shared.web import make_service_app
from pydantic import BaseModel, Field


class Connection(BaseModel):
    name: str
    password: str = Field(min_length=12)
    port: int


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
    assert response.json() == {"detail": "Item not found"}


def test_an_unknown_route_is_a_json_404(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_a_validation_error_is_422_without_echoing_the_input(client: TestClient) -> None:
    response = client.post(
        "/connections", json={"name": "erp", "password": "short-secret", "port": "x"}
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [e["loc"] for e in detail] == [["body", "port"]]
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
    assert isinstance(response.json()["detail"], list)


def test_an_unexpected_error_is_500_internal_error_without_internals(
    client: TestClient,
) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal error"}
    assert "hunter2" not in response.text
    assert response.headers["X-Request-ID"]


def test_a_body_larger_than_the_limit_is_413_by_content_length(client: TestClient) -> None:
    response = client.post("/raw", content=b"x" * 1001)
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body larger than 1000 bytes"}
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
    assert response.json() == {"detail": "Invalid Content-Length header"}


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
