"""Hostile HTTP through the real gateway (nginx) in front of the running services.

Each hostile request gets its own 4xx and never costs a neighbour anything: the
requests of another client interleaved with them all get their proper answers (no
503 from a connection the service dropped), huge headers are refused by the gateway,
and a client that trickles its header is cut off at the header deadline.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from orderflow_devstack.components import render_template

from tests.e2e.flow import ALL_ROLES, LINE, Flow, wait_for

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]


def _token(stack: Any, org: str, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "sub": "mallory",
        "org_id": org,
        "roles": ALL_ROLES,
        "iss": "orderflow",
        "aud": "orderflow",
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    return jwt.encode(
        {k: v for k, v in body.items() if v is not None}, stack.jwt_secret, algorithm="HS256"
    )


def _json(text: str) -> dict[str, Any]:
    return {"content": text.encode(), "headers": {"Content-Type": "application/json"}}


Hostile = tuple[str, str, str, dict[str, Any], int]


def _hostile_requests(stack: Any, flow: Flow, connection_id: str) -> list[Hostile]:
    """(name, method, path, httpx kwargs, expected status), sent with the flow's token
    unless the kwargs carry their own Authorization."""
    draft_id = flow.approved_draft()
    line = json.dumps(LINE)

    def bearer(**claims: Any) -> dict[str, Any]:
        return {"headers": {"Authorization": f"Bearer {_token(stack, flow.org, **claims)}"}}

    return [
        ("NUL in customer_id", "POST", "/draft-orders", _json('{"customer_id": "C\\u0000"}'), 422),
        (
            "lone surrogate in sku",
            "POST",
            "/draft-orders",
            _json('{"customer_id": "C", "lines": [' + line.replace("SKU-1", "\\ud800") + "]}"),
            422,
        ),
        (
            "NUL in description",
            "PATCH",
            f"/draft-orders/{draft_id}",
            _json('{"lines": [' + line.replace("Widget", "W\\u0000") + "]}"),
            422,
        ),
        ("NUL in entity_id", "GET", "/audit-log?entity_id=%00", {}, 422),
        ("NUL in a path (nginx refuses it)", "GET", "/draft-orders/%00", {}, 400),
        (
            "NUL in file_name_template",
            "PATCH",
            f"/erp-connections/{connection_id}",
            _json('{"file_name_template": "{export_id}\\u0000"}'),
            422,
        ),
        (
            "sftp host null",
            "PATCH",
            f"/erp-connections/{connection_id}",
            {"json": {"sftp": {"host": None}}},
            422,
        ),
        (
            "body not UTF-8",
            "POST",
            "/draft-orders",
            {"content": b'{"c": "\xff"}', "headers": {"Content-Type": "application/json"}},
            400,
        ),
        ("NUL in org_id", "GET", "/draft-orders", bearer(org_id=f"{flow.org}\u0000"), 401),
        ("roles a string", "GET", "/erp-connections", bearer(roles="admin"), 401),
        ("exp a string", "GET", "/audit-log", bearer(exp=str(int(time.time()) + 60)), 401),
        ("exp 10**30", "GET", "/draft-orders", bearer(exp=10**30), 401),
        ("no iat", "GET", "/draft-orders", bearer(iat=None), 401),
        (
            "blank Idempotency-Key",
            "POST",
            f"/draft-orders/{draft_id}/push",
            {"headers": {"Idempotency-Key": ""}},
            400,
        ),
        (
            "200 KB header",
            "GET",
            "/draft-orders",
            {"headers": {"X-Padding": "p" * 200_000}},
            431,
        ),
    ]


def test_hostile_requests_get_their_4xx_and_interleaved_neighbours_all_get_answers(
    stack: Any,
) -> None:
    flow = Flow(stack)
    neighbour = Flow(stack, connector=False)
    try:
        connection_id = flow.http.get("/erp-connections").json()[0]["id"]
        hostile = _hostile_requests(stack, flow, connection_id)
        got: list[tuple[str, int, int]] = []
        neighbours: list[int] = []
        for round_ in range(20):
            name, method, path, kwargs, expected = hostile[round_ % len(hostile)]
            response = flow.http.request(method, path, **kwargs)
            got.append((name, expected, response.status_code))
            kind = response.headers.get("content-type", "")
            assert kind.split(";")[0] in ("application/json", "application/problem+json"), (
                name,
                response.status_code,
                kind,
            )
            assert response.json()["detail"], name
            if round_ % 2:
                answer = neighbour.http.get("/draft-orders", params={"limit": 1})
            else:
                answer = neighbour.http.post(
                    "/draft-orders", json={"customer_id": "C-N", "lines": [LINE]}
                )
            neighbours.append(answer.status_code)
        for name, expected, status in got:
            assert status == expected, (name, status)
        assert all(code in (200, 201) for code in neighbours), neighbours
        # the push with a blank key pushed nothing
        assert flow.http.get("/draft-orders").json()["items"][-1]["exports"] == []
    finally:
        flow.close()
        neighbour.close()


def test_a_huge_header_is_refused_by_the_gateway_and_another_client_is_fine(
    stack: Any,
) -> None:
    headers = stack.auth_headers()
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as hostile:
        huge = hostile.get("/draft-orders", headers={**headers, "X-Padding": "p" * 200_000})
        assert huge.status_code == 431, huge.status_code
        assert huge.json()["detail"] == "Request header fields too large"
        big_token = _token(stack, "demo", padding="p" * 200_000)
        token = hostile.get("/draft-orders", headers={"Authorization": f"Bearer {big_token}"})
        assert token.status_code == 431
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as other:
        assert other.get("/draft-orders", params={"limit": 1}, headers=headers).status_code == 200


def test_a_header_just_over_8_kib_reaches_the_service_and_a_long_token_is_401(
    stack: Any,
) -> None:
    # the gateway lets 16 KB lines through; the service refuses a token over 8 KiB itself
    token = _token(stack, "demo", padding="p" * 9_000)
    response = httpx.get(
        f"{stack.gateway_url}/draft-orders",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "Token longer than 8192 bytes"
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


# --- slowloris: a gateway from the same templates with a 1 s header deadline ----------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tight_gateway(stack: Any, tmp_path: Path) -> Iterator[str]:
    """nginx with deploy/nginx/*.template exactly, except `client_header_timeout 1s`."""
    home = tmp_path / "gateway"
    (home / "tmp").mkdir(parents=True)
    port = _free_port()
    routes = render_template(
        (REPO / "deploy" / "nginx" / "orderflow.conf.template").read_text(),
        {
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "DRAFT_API_ADDR": f"127.0.0.1:{stack.ports['draft-api']}",
            "EXPORT_SERVICE_ADDR": f"127.0.0.1:{stack.ports['export-service']}",
            "AUDIT_SERVICE_ADDR": f"127.0.0.1:{stack.ports['audit-service']}",
        },
    )
    assert "client_header_timeout 10s;" in routes
    (home / "orderflow.conf").write_text(
        routes.replace("client_header_timeout 10s;", "client_header_timeout 1s;")
    )
    main = render_template(
        (REPO / "deploy" / "nginx" / "nginx.local.conf.template").read_text(),
        {"NGINX_USER": "nobody", "STATE": str(home), "MIME_TYPES": "/etc/nginx/mime.types"},
    )
    (home / "nginx.conf").write_text(main)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    process = subprocess.Popen(
        [nginx, "-e", "stderr", "-p", str(home), "-c", str(home / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            return httpx.get(f"{url}/_gateway/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=20, what="the tight gateway")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _cut_after(port: int, trickle: Callable[[socket.socket], None], limit: float) -> float:
    """Seconds until the gateway closed a connection that trickles its request header."""
    begin = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=0.25) as sock:
        sock.sendall(b"GET /draft-orders HTTP/1.1\r\nHost: gateway\r\n")
        while time.monotonic() - begin < limit:
            try:
                trickle(sock)
                if sock.recv(4096) == b"":
                    return time.monotonic() - begin
            except TimeoutError:
                continue
            except OSError:  # reset by the gateway
                return time.monotonic() - begin
    raise AssertionError(f"a trickled header was still open after {limit} s")


def test_a_trickled_header_is_cut_at_the_header_deadline(stack: Any, tight_gateway: str) -> None:
    port = int(tight_gateway.rsplit(":", 1)[1])
    sent: list[int] = []

    def one_header_byte_at_a_time(sock: socket.socket) -> None:
        sock.sendall(b"X")
        sent.append(1)

    elapsed = _cut_after(port, one_header_byte_at_a_time, limit=10)
    assert 0.9 <= elapsed < 5, elapsed
    assert len(sent) >= 3  # it was still sending: cut by the deadline, not by a bad byte
    # meanwhile and afterwards, another client is served
    answer = httpx.get(
        f"{tight_gateway}/draft-orders",
        params={"limit": 1},
        headers=stack.auth_headers(org=f"tight-{uuid.uuid4().hex[:6]}"),
        timeout=10,
    )
    assert answer.status_code == 200
