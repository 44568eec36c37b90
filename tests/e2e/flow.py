"""Black-box helpers for the end-to-end tier: drive the flow over HTTP, observe it in
Postgres, Kafka and the dropzone, and count what was lost, duplicated or stuck."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

ALL_ROLES = ["viewer", "operator", "approver", "admin"]
LINE = {
    "sku": "SKU-1",
    "description": "Widget",
    "quantity": 3,
    "unit": "EA",
    "unit_price": "9.50",
    "currency": "EUR",
}
#: Statuses a client may see while a component it needs is down; it then retries.
RETRYABLE = {502, 503, 504}


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll `condition` until truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Outcome:
    """One row of docs/reliability.md."""

    scenario: str
    n: int
    injected: str
    pushed: int = 0
    error: int = 0
    lost: int = 0
    duplicated_files: int = 0
    duplicated_sent_events: int = 0
    redelivered_records: int = 0
    stuck: int = 0
    temp_files: int = 0
    audit_missing: int = 0
    audit_duplicated: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Flow:
    """One organisation with its own SFTP connection, driven through the gateway."""

    def __init__(self, stack: Any, *, connector: bool = True) -> None:
        self.stack = stack
        self.org = f"e2e-{uuid.uuid4().hex[:8]}"
        self.http = httpx.Client(
            base_url=stack.gateway_url,
            headers={"Authorization": f"Bearer {stack.token(roles=ALL_ROLES, org=self.org)}"},
            timeout=30,
        )
        if connector:
            self.add_connection()

    def close(self) -> None:
        self.http.close()

    # --- requests that survive a component being down --------------------------------
    def call(
        self, method: str, path: str, *, timeout: float = 120, **kwargs: Any
    ) -> httpx.Response:
        """Send until the answer is not a gateway/unavailable error (a client's retry)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
                if response.status_code not in RETRYABLE:
                    return response
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} kept failing for {timeout:.0f}s")
            time.sleep(0.2)

    def add_connection(self, *, remote_directory: str = "/inbox", file_format: str = "csv") -> None:
        """The org's SFTP connection to the stack's dropzone (a `remote_directory` that
        does not exist there makes every delivery fail for good)."""
        body = {
            "name": "E2E dropzone",
            "connector_type": "sftp_dropzone",
            "is_active": True,
            "file_format": file_format,
            "file_name_template": "{external_ref}_{export_id}",
            "sftp": {
                "host": self.stack.sftp_host,
                "port": self.stack.sftp_port,
                "username": self.stack.sftp_username,
                "remote_directory": remote_directory,
                "host_key_fingerprint": self.stack.sftp_host_key_fingerprint,
                "private_key": self.stack.sftp_private_key,
                "password": None,
            },
        }
        created = self.call("POST", "/erp-connections", json=body)
        assert created.status_code == 201, created.text
        wait_for(
            lambda: self.stack.psql(
                "SELECT count(*) FROM draft.erp_connector WHERE org_id = %s AND is_active",
                (self.org,),
            )[0][0],
            timeout=60,
            what="draft-api to learn the new connection",
        )

    def approved_draft(self) -> str:
        body = {
            "customer_id": "C-E2E",
            "external_ref": f"E2E-{uuid.uuid4().hex[:12]}",
            "lines": [LINE],
        }
        created = self.call("POST", "/draft-orders", json=body)
        assert created.status_code == 201, created.text
        draft_id = str(created.json()["id"])
        validated = self.call("POST", f"/draft-orders/{draft_id}/validate")
        assert validated.json()["status"] == "READY", validated.text
        approved = self.call("POST", f"/draft-orders/{draft_id}/approve")
        assert approved.status_code == 200, approved.text
        return draft_id

    def approved_drafts(self, n: int) -> list[str]:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda _: self.approved_draft(), range(n)))

    def push(self, draft_id: str, key: str | None = None) -> str:
        """Push with an idempotency key, retried with the same key until answered."""
        key = key or str(uuid.uuid4())
        response = self.call(
            "POST", f"/draft-orders/{draft_id}/push", headers={"Idempotency-Key": key}
        )
        assert response.status_code in (200, 202), response.text
        return str(response.json()["erp_export_id"])

    def push_all(self, drafts: list[str]) -> dict[str, str]:
        with ThreadPoolExecutor(8) as pool:
            return dict(zip(drafts, pool.map(self.push, drafts), strict=True))

    # --- observation -------------------------------------------------------------------
    def statuses(self, drafts: list[str]) -> Counter[str]:
        rows = self.stack.psql(
            "SELECT status FROM draft.draft_order WHERE id = ANY(%s::uuid[])", (drafts,)
        )
        return Counter(r[0] for r in rows)

    def wait_settled(
        self, drafts: list[str], *, timeout: float = 180, final: tuple[str, ...] = ("PUSHED",)
    ) -> None:
        wait_for(
            lambda: sum(self.statuses(drafts)[s] for s in final) == len(drafts),
            timeout=timeout,
            what=f"{len(drafts)} drafts to reach {'/'.join(final)} "
            f"(now {dict(self.statuses(drafts))})",
        )

    def sent_events(self, export_ids: set[str]) -> tuple[Counter[str], Counter[str]]:
        """(distinct export.sent event ids per export, raw records per export)."""
        return asyncio.run(_read_sent(self.stack.kafka_options("admin"), export_ids))

    def measure(
        self,
        outcome: Outcome,
        drafts: list[str],
        *,
        audit_actions: tuple[str, ...] = ("DRAFT_APPROVED", "DRAFT_PUSHED", "EXPORT_SENT"),
    ) -> Outcome:
        """Count, for the drafts' current exports: lost, duplicated, stuck, audit gaps."""
        statuses = self.statuses(drafts)
        outcome.pushed = statuses["PUSHED"]
        outcome.error = statuses["ERROR"]
        outcome.stuck = statuses["PUSHING"]
        current = {
            str(r[0])
            for r in self.stack.psql(
                "SELECT current_export_id FROM draft.draft_order"
                " WHERE id = ANY(%s::uuid[]) AND current_export_id IS NOT NULL",
                (drafts,),
            )
        }
        export_rows = dict(
            self.stack.psql(
                "SELECT id::text, status FROM export.erp_export WHERE id = ANY(%s::uuid[])",
                (list(current),),
            )
        )
        files = [p.name for p in self.stack.inbox_dir.iterdir()]
        outcome.temp_files = sum(1 for f in files if f.startswith(".") or f.endswith(".part"))
        per_export = Counter(e for f in files for e in current if e in f)
        sent = {e for e, status in export_rows.items() if status == "SENT"}
        outcome.lost = (
            len(drafts)
            - len(current)  # accepted pushes with no export
            + len(current - export_rows.keys())  # exports export-service never saw
            + sum(1 for e in sent if per_export[e] == 0)  # "sent" with no file
        )
        outcome.duplicated_files = sum(c - 1 for c in per_export.values() if c > 1)
        distinct, raw = self.sent_events(current)
        outcome.duplicated_sent_events = sum(c - 1 for c in distinct.values() if c > 1)
        outcome.redelivered_records = sum(raw.values()) - sum(distinct.values())
        expected = {(d, a) for d in drafts for a in audit_actions}

        def audit_counts() -> Counter[tuple[str, str]]:
            rows = self.stack.psql(
                "SELECT entity_id, action FROM audit.audit_log"
                " WHERE org_id = %s AND entity_id = ANY(%s)",
                (self.org, drafts),
            )
            return Counter((r[0], r[1]) for r in rows)

        try:
            wait_for(
                lambda: expected <= set(audit_counts()),
                timeout=120,
                what="audit entries of every draft",
            )
        except AssertionError:
            pass  # counted below as missing, and asserted by the caller
        counts = audit_counts()
        outcome.audit_missing = len(expected - set(counts))
        # one entry per event, and one of each once-only action (an export that waits
        # for its dropzone is audited once per EXPORT_DELAYED event: those may repeat)
        once = Counter({k: c for k, c in counts.items() if k[1] in audit_actions})
        same_event = self.stack.psql(
            "SELECT count(*) - count(DISTINCT event_id) FROM audit.audit_log"
            " WHERE org_id = %s AND entity_id = ANY(%s)",
            (self.org, drafts),
        )[0][0]
        outcome.audit_duplicated = sum(c - 1 for c in once.values() if c > 1) + same_event
        return outcome


async def _read_sent(
    kafka: dict[str, Any], export_ids: set[str]
) -> tuple[Counter[str], Counter[str]]:
    import json

    consumer = AIOKafkaConsumer(
        "export.sent",
        **kafka,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise AssertionError("no partitions of export.sent were assigned")
            await consumer.getmany(timeout_ms=100)
        partitions = list(consumer.assignment())
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        seen: dict[str, set[str]] = {}
        raw: Counter[str] = Counter()

        async def behind() -> bool:
            for tp in partitions:
                if await consumer.position(tp) < end[tp]:
                    return True
            return False

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                for record in records:
                    try:
                        export_id = json.loads(record.value)["erp_export_id"]
                        headers = dict(record.headers)
                        headers["ce_id"].decode()
                    except (ValueError, KeyError, TypeError, AttributeError):
                        continue  # a poison record some test sent: not an export.sent
                    if export_id not in export_ids:
                        continue
                    seen.setdefault(export_id, set()).add(headers["ce_id"].decode())
                    raw[export_id] += 1
        return Counter({k: len(v) for k, v in seen.items()}), raw
    finally:
        await consumer.stop()
