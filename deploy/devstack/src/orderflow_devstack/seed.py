"""Demo data through the gateway: an active SFTP dropzone connection and READY drafts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from orderflow_devstack.config import DEMO_ORG
from orderflow_devstack.procs import StackError, wait_until

if TYPE_CHECKING:
    from orderflow_devstack.stack import Stack

DEMO_DRAFTS: list[dict[str, Any]] = [
    {
        "customer_id": "C-1001",
        "external_ref": "PO-DEMO-1",
        "lines": [
            {
                "sku": "SKU-1",
                "description": "Widget",
                "quantity": 3,
                "unit": "EA",
                "unit_price": "9.50",
                "currency": "EUR",
            },
        ],
    },
    {
        "customer_id": "C-1002",
        "external_ref": "PO-DEMO-2",
        "lines": [
            {
                "sku": "SKU-2",
                "description": "Steel wire",
                "quantity": "12.5",
                "unit": "KGM",
                "unit_price": "4.20",
                "currency": "EUR",
            },
            {
                "sku": "SKU-3",
                "description": "Cable",
                "quantity": 40,
                "unit": "MTR",
                "unit_price": "1.15",
                "currency": "EUR",
            },
        ],
    },
    {
        "customer_id": "C-1003",
        "external_ref": "PO-DEMO-3",
        "lines": [
            {
                "sku": "SKU-4",
                "description": "Gadget",
                "quantity": 1,
                "unit": "EA",
                "unit_price": "120.00",
                "currency": "EUR",
            },
        ],
    },
]


def _items(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("items", "data", "results", "connections"):
            if isinstance(body.get(key), list):
                return list(body[key])
    return []


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 300:
        raise StackError(f"seed: {what} answered {response.status_code}: {response.text[:500]}")
    return response.json()


def connector_known_to_draft_api(stack: Stack) -> bool:
    rows = stack.psql_rows(
        "SELECT count(*) FROM draft.erp_connector WHERE org_id = %s AND is_active", (DEMO_ORG,)
    )
    return bool(rows and rows[0][0])


def seed_demo(stack: Stack) -> None:
    """Idempotent: does nothing when the demo org already has an active dropzone."""
    cfg = stack.cfg
    sftp = stack.sftp_info()
    seed_demo_at(
        gateway_url=f"http://127.0.0.1:{cfg.ports['gateway']}",
        token=stack.token(),
        sftp={**sftp, "private_key": Path(sftp["private_key_path"]).read_text()},
        connector_known=lambda: connector_known_to_draft_api(stack),
        say=stack.say,
    )


def seed_demo_at(
    *,
    gateway_url: str,
    token: str,
    sftp: dict[str, Any],
    connector_known: Callable[[], bool],
    say: Callable[[str], None],
) -> None:
    """The demo org's dropzone connection and READY drafts through a gateway (the local
    stack's or compose's). `sftp`: host, port, username, host_key_fingerprint and
    private_key as the export-service reaches the dropzone. Idempotent."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=30) as http:
        existing = _items(_check(http.get("/erp-connections"), "GET /erp-connections"))
        if any(
            item.get("connector_type") == "sftp_dropzone" and item.get("is_active")
            for item in existing
        ):
            say("seed: demo org already seeded")
            return
        connection = {
            "name": "Demo ERP dropzone",
            "connector_type": "sftp_dropzone",
            "is_active": True,
            "file_format": "csv",
            "file_name_template": "{external_ref}_{export_id}",
            "sftp": {
                "host": sftp["host"],
                "port": sftp["port"],
                "username": sftp["username"],
                "remote_directory": "/inbox",
                "host_key_fingerprint": sftp["host_key_fingerprint"],
                "private_key": sftp["private_key"],
                "password": None,
            },
        }
        _check(http.post("/erp-connections", json=connection), "POST /erp-connections")
        say("seed: demo sftp_dropzone connection created")
        wait_until(
            connector_known,
            timeout=60,
            what="seed: draft-api never saw the demo connection (erp_connection.changed)",
            interval=0.25,
        )
        for body in DEMO_DRAFTS:
            draft = _check(http.post("/draft-orders", json=body), "POST /draft-orders")
            validated = _check(
                http.post(f"/draft-orders/{draft['id']}/validate"), "POST .../validate"
            )
            if validated.get("status") != "READY":
                raise StackError(f"seed: demo draft {draft['id']} did not validate: {validated}")
        say(f"seed: {len(DEMO_DRAFTS)} READY drafts created")
