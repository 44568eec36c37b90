"""SIGKILL the export-service process while exports are in flight, then restart it."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from .conftest import ServiceProcess, eventually, rows

pytestmark = pytest.mark.usefixtures("exclusive")
COUNT = 100


async def test_sigkill_with_exports_in_flight_delivers_each_exactly_once(
    infra, dropzone, box, kafka, db, export_env, tmp_path
):
    env = {
        **export_env,
        "EXPORT_STORAGE_DIR": str(tmp_path / "storage"),
        "EXPORT_LEASE_SECONDS": "2",
        "EXPORT_WORKER_CONCURRENCY": "4",
        "LOG_LEVEL": "WARNING",
    }
    service = ServiceProcess(env, tmp_path / "export-service.log")
    url = service.url
    service.start()
    try:
        await eventually(service.ready, "export-service to be ready")
        org = f"org-{uuid.uuid4().hex[:10]}"
        async with httpx.AsyncClient() as client:
            created = await client.post(
                f"{url}/erp-connections",
                headers=infra.auth_headers(roles=["admin"], org=org),
                json={
                    "name": "crash test",
                    "connector_type": "sftp_dropzone",
                    "is_active": True,
                    "file_format": "json",
                    "sftp": {
                        "host": dropzone.host,
                        "port": dropzone.port,
                        "username": dropzone.username,
                        "remote_directory": box.remote,
                        "host_key_fingerprint": dropzone.fingerprint,
                        "private_key": dropzone.private_key,
                    },
                },
            )
        assert created.status_code == 201, created.text
        pushed = await asyncio.gather(*(kafka.push(org, f"PO-{i}") for i in range(COUNT)))
        drafts = {p.subject for p in pushed}

        async def started() -> bool:
            found = await rows(
                db,
                "SELECT count(*) AS n FROM export.erp_export "
                "WHERE org_id = :o AND status <> 'PENDING'",
                o=org,
            )
            return found[0]["n"] > 0

        await eventually(started, "the first delivery to start", deadline=60)
        service.kill()
        at_kill = await rows(
            db,
            "SELECT status, count(*) AS n FROM export.erp_export WHERE org_id = :o GROUP BY status",
            o=org,
        )
        states = {r["status"]: r["n"] for r in at_kill}
        print(f"\nat SIGKILL: {states}, files: {len(box.files())}")
        assert states.get("SENT", 0) < COUNT, "nothing was in flight at the kill"

        service.start()

        async def all_sent() -> bool:
            found = await rows(
                db,
                "SELECT count(*) AS n FROM export.erp_export WHERE org_id = :o AND status = 'SENT'",
                o=org,
            )
            return found[0]["n"] == COUNT

        await eventually(all_sent, "every export to be SENT", deadline=120)

        async def all_published() -> bool:
            found = await rows(
                db,
                "SELECT count(*) AS n FROM export.outbox WHERE published_at IS NULL "
                "AND key = ANY(:keys)",
                keys=list(drafts),
            )
            return found[0]["n"] == 0

        await eventually(all_published, "the relay to publish every event")
    finally:
        service.kill()

    files = box.files()
    assert len(files) == COUNT
    assert not [f for f in files if f.startswith(".") or f.endswith(".part")]
    exports = await rows(
        db, "SELECT id, file_name, status FROM export.erp_export WHERE org_id = :o", o=org
    )
    assert sorted(e["file_name"] for e in exports) == files
    announced = await rows(
        db,
        "SELECT key, count(*) AS n FROM export.outbox WHERE topic = 'export.sent' "
        "AND key = ANY(:keys) GROUP BY key",
        keys=list(drafts),
    )
    assert len(announced) == COUNT and all(r["n"] == 1 for r in announced)
    events = await kafka.events("export.sent", drafts, COUNT)
    assert {e.subject for e in events} == drafts
    ids_per_draft: dict[str, set[uuid.UUID]] = {}
    for event in events:
        ids_per_draft.setdefault(event.subject, set()).add(event.id)
    assert all(len(ids) == 1 for ids in ids_per_draft.values())
