"""The nginx gateway routes each path to the right service and passes the headers.

Stand-in HTTP servers listen on the three service ports and echo what they got, so
the routes are checked without the services themselves.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from orderflow_devstack.pytest_plugin import StackHandle

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
        ("/docs", "draft-api", "/docs"),
        ("/openapi.json", "draft-api", "/openapi.json"),
        ("/erp-connections", "export-service", "/erp-connections"),
        ("/erp-connections/42", "export-service", "/erp-connections/42"),
        ("/audit-log?entity_id=7", "audit-service", "/audit-log?entity_id=7"),
        ("/_svc/draft-api/readyz", "draft-api", "/readyz"),
        ("/_svc/export-service/docs", "export-service", "/docs"),
        ("/_svc/audit-service/metrics", "audit-service", "/metrics"),
    ],
)
def test_each_path_reaches_its_service(
    gateway: httpx.Client, path: str, service: str, upstream_path: str
) -> None:
    seen = gateway.get(path).json()
    assert (seen["service"], seen["path"]) == (service, upstream_path)


def test_authorization_and_idempotency_key_are_passed_on(gateway: httpx.Client) -> None:
    seen = gateway.post(
        "/draft-orders/d1/push",
        headers={"Authorization": "Bearer abc.def.ghi", "Idempotency-Key": "key-123"},
    ).json()
    assert seen["authorization"] == "Bearer abc.def.ghi"
    assert seen["idempotency_key"] == "key-123"


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
        assert response.json() == {"detail": "Service temporarily unavailable"}
    finally:
        _serve(infra, "audit-service")
