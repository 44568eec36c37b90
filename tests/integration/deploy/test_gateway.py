"""The nginx gateway routes each path to the right service and passes the headers.

Stand-in HTTP servers listen on the three service ports and echo what they got, so
the routes are checked without the services themselves.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from orderflow_devstack.pytest_plugin import StackHandle
from orderflow_shared.service_cli import uvicorn_options
from orderflow_shared.settings import ServiceSettings
from orderflow_shared.web import make_service_app

SERVICES = ("draft-api", "export-service", "audit-service")
#: the stand-in servers of the running test, by service
_servers: dict[str, ThreadingHTTPServer] = {}


def _echo_handler(service: str) -> type[BaseHTTPRequestHandler]:
    class Echo(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            payload = json.dumps(
                {
                    "service": service,
                    "path": self.path,
                    "method": self.command,
                    "authorization": self.headers.get("Authorization"),
                    "idempotency_key": self.headers.get("Idempotency-Key"),
                    "request_id": self.headers.get("X-Request-ID"),
                    "body_length": len(body),
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    return Echo


def _serve(infra: StackHandle, service: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", infra.ports[service]), _echo_handler(service))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    _servers[service] = server


@pytest.fixture(scope="module")
def gateway(infra: StackHandle) -> Iterator[httpx.Client]:
    for service in SERVICES:
        _serve(infra, service)
    infra.start("gateway")
    try:
        with httpx.Client(base_url=infra.gateway_url, timeout=10) as client:
            yield client
    finally:
        infra.stop("gateway")
        while _servers:
            _, server = _servers.popitem()
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize(
    ("path", "service", "upstream_path"),
    [
        ("/draft-orders", "draft-api", "/draft-orders"),
        ("/draft-orders/abc/push?x=1", "draft-api", "/draft-orders/abc/push?x=1"),
        ("/docs-static/swagger-ui.css", "draft-api", "/docs-static/swagger-ui.css"),
        ("/openapi.json", "draft-api", "/openapi.json"),
        ("/erp-connections", "export-service", "/erp-connections"),
        ("/erp-connections/42", "export-service", "/erp-connections/42"),
        ("/audit-log?entity_id=7", "audit-service", "/audit-log?entity_id=7"),
        ("/_svc/draft-api/readyz", "draft-api", "/readyz"),
        ("/_svc/export-service/docs", "export-service", "/docs"),
        ("/_svc/audit-service/livez", "audit-service", "/livez"),
    ],
)
def test_each_path_reaches_its_service(
    gateway: httpx.Client, path: str, service: str, upstream_path: str
) -> None:
    seen = gateway.get(path).json()
    assert (seen["service"], seen["path"]) == (service, upstream_path)


@pytest.mark.parametrize(
    "path",
    [
        "/metrics",
        "/metrics/",
        "//metrics",
        "/metrics?format=text",
        "/%6detrics",
        "/_svc/draft-api/metrics",
        "/_svc/export-service/metrics",
        "/_svc/audit-service/metrics",
        "/_svc/audit-service/./metrics",
        "/_svc/draft-api//metrics",
    ],
)
def test_metrics_are_not_served_to_the_public_origin(gateway: httpx.Client, path: str) -> None:
    request = gateway.build_request("GET", "/")  # the path as written, not normalised
    request.url = request.url.copy_with(raw_path=path.encode())
    answer = gateway.send(request)
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert body["status"] == 404 and "service" not in body  # no stand-in answered


def test_the_gateway_docs_page_includes_each_service_operation_list(
    gateway: httpx.Client,
) -> None:
    page = gateway.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for service in SERVICES:  # each stand-in echoes the path the SSI include asked for
        assert f'"service": "{service}", "path": "/docs/operations"' in page.text, service
        assert f"/_svc/{service}/" in page.text or service == "draft-api"
    assert "SwaggerUIBundle" in page.text and "/_svc/draft-api/docs-static/" in page.text


def test_a_sane_request_id_passes_and_any_other_becomes_a_uuid(gateway: httpx.Client) -> None:
    kept = gateway.get("/draft-orders", headers={"X-Request-ID": "Desk-7:retry.2_a"}).json()
    assert kept["request_id"] == "Desk-7:retry.2_a"
    for bad in ("", "a b", "x" * 129, "a;b", "<script>"):
        made = gateway.get("/draft-orders", headers={"X-Request-ID": bad}).json()["request_id"]
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}", made)
    assert gateway.get("/draft-orders").json()["request_id"] != made


def test_authorization_and_idempotency_key_are_passed_on(gateway: httpx.Client) -> None:
    seen = gateway.post(
        "/draft-orders/d1/push",
        headers={"Authorization": "Bearer abc.def.ghi", "Idempotency-Key": "key-123"},
    ).json()
    assert seen["authorization"] == "Bearer abc.def.ghi"
    assert seen["idempotency_key"] == "key-123"


def test_a_blank_idempotency_key_reaches_the_service_as_sent(gateway: httpx.Client) -> None:
    # draft-api answers a blank key with 400; the gateway must not drop it (no key: push)
    seen = gateway.post("/draft-orders/d1/push", headers={"Idempotency-Key": ""}).json()
    assert seen["idempotency_key"] == ""
    assert gateway.post("/draft-orders/d1/push").json()["idempotency_key"] is None


# --- a 500 never costs the pooled upstream connection --------------------------------


def _raising_app() -> FastAPI:
    """A service app (the shared kit) with a route that fails like a bug would."""
    app = make_service_app("stand-in draft-api", "0")

    @app.api_route("/draft-orders/boom", methods=["GET", "POST"])
    async def boom() -> None:
        raise RuntimeError("a bug that knows the password hunter2")

    @app.api_route("/draft-orders/ok", methods=["GET", "POST"])
    async def ok(request: Request) -> dict[str, Any]:
        # the gateway's source port: the same port means the same pooled connection
        client = request.scope["client"]
        return {"upstream_port": client[1] if client else None}

    return app


@contextlib.contextmanager
def _uvicorn_in_place_of(infra: StackHandle, service: str, app: FastAPI) -> Iterator[None]:
    """The stand-in of `service` swapped for uvicorn run as the services run it."""
    echo = _servers.pop(service)
    echo.shutdown()
    echo.server_close()
    options = uvicorn_options(ServiceSettings(orderflow_env="test"))
    options.update(host="127.0.0.1", port=infra.ports[service], proxy_headers=False, lifespan="off")
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        _serve(infra, service)


def test_a_500_keeps_the_upstream_connection_and_the_next_request_succeeds(
    infra: StackHandle, gateway: httpx.Client
) -> None:
    with _uvicorn_in_place_of(infra, "draft-api", _raising_app()):
        first = gateway.get("/draft-orders/ok")
        assert first.status_code == 200, first.text
        for method in ("GET", "POST"):
            failed = gateway.request(method, "/draft-orders/boom")
            assert failed.status_code == 500
            assert failed.json()["detail"] == "Internal error"
            assert failed.json()["request_id"] == failed.headers["X-Request-ID"]
            assert failed.json()["status"] == 500
            assert "hunter2" not in failed.text
            following = gateway.request(method, "/draft-orders/ok")
            assert following.status_code == 200, (method, following.text)
            assert following.json() == first.json(), "the 500 cost the pooled connection"


def test_requests_interleaved_with_500s_all_get_their_own_answers(
    infra: StackHandle, gateway: httpx.Client
) -> None:
    answers: list[tuple[str, int]] = []
    ports: set[int] = set()
    with (
        _uvicorn_in_place_of(infra, "draft-api", _raising_app()),
        httpx.Client(base_url=infra.gateway_url, timeout=10) as neighbour,
    ):
        for _ in range(20):
            answers.append(("hostile", gateway.post("/draft-orders/boom").status_code))
            response = neighbour.post("/draft-orders/ok")
            answers.append(("neighbour", response.status_code))
            if response.status_code == 200:
                ports.add(response.json()["upstream_port"])
    assert [code for who, code in answers if who == "hostile"] == [500] * 20
    assert [code for who, code in answers if who == "neighbour"] == [200] * 20
    assert len(ports) == 1, f"upstream connections used: {len(ports)}"


def test_bodies_over_one_megabyte_are_refused(gateway: httpx.Client) -> None:
    assert gateway.post("/draft-orders", content=b"x" * 900_000).json()["body_length"] == 900_000
    assert gateway.post("/draft-orders", content=b"x" * 1_100_000).status_code == 413


def test_a_service_that_is_down_answers_503_with_a_detail(
    infra: StackHandle, gateway: httpx.Client
) -> None:
    audit = _servers.pop("audit-service")
    audit.shutdown()
    audit.server_close()
    try:
        response = gateway.get("/audit-log")
        assert response.status_code == 503
        assert response.json()["detail"] == "Service temporarily unavailable"
    finally:
        _serve(infra, "audit-service")
