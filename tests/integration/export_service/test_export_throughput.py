"""Figures of the running service (printed; asserted only for correctness, not speed).

- latency: pushes at a steady 50/s, from `requested_at` in the event to `sent_at`;
- sustained: a burst of exports, files per second from the first record to the last SENT.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from .conftest import ServiceProcess, eventually, rows

pytestmark = pytest.mark.usefixtures("exclusive")
RATE, SECONDS, BURST = 50, 10, 2000


async def _count_sent(db, org: str) -> int:
    found = await rows(
        db,
        "SELECT count(*) AS n FROM export.erp_export WHERE org_id = :o AND status = 'SENT'",
        o=org,
    )
    return int(found[0]["n"])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def test_latency_at_50_pushes_per_second_and_sustained_delivery(
    infra, dropzone, box, kafka, db, export_env, tmp_path
):
    env = {**export_env, "EXPORT_STORAGE_DIR": str(tmp_path / "storage"), "LOG_LEVEL": "WARNING"}
    service = ServiceProcess(env, tmp_path / "export-service.log")
    url = service.url
    service.start()
    try:
        await eventually(service.ready, "export-service to be ready")
        orgs = [f"org-{uuid.uuid4().hex[:10]}" for _ in range(2)]
        async with httpx.AsyncClient() as client:
            for org in orgs:
                created = await client.post(
                    f"{url}/erp-connections",
                    headers=infra.auth_headers(roles=["admin"], org=org),
                    json={
                        "name": "bench",
                        "connector_type": "sftp_dropzone",
                        "is_active": True,
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
        steady, burst = orgs

        # warm-up: the consumer has joined and the SSH session is open
        await kafka.push(steady)
        await eventually(lambda: _count_sent(db, steady), "the warm-up export")

        loop = asyncio.get_running_loop()
        begin = loop.time()
        for i in range(RATE * SECONDS):
            await asyncio.sleep(max(0.0, begin + i / RATE - loop.time()))
            await kafka.push(steady, f"S-{i}")

        async def steady_done() -> bool:
            return await _count_sent(db, steady) == RATE * SECONDS + 1

        await eventually(steady_done, "the steady pushes", deadline=120)
        pushed_at = {
            e.parse().erp_export_id: e.parse().requested_at
            for e in kafka.sent
            if e.org_id == steady
        }
        sent = await rows(
            db, "SELECT id, sent_at FROM export.erp_export WHERE org_id = :o", o=steady
        )
        latencies = [(r["sent_at"] - pushed_at[r["id"]]).total_seconds() for r in sent]

        cpu_before = service.cpu_seconds()
        await asyncio.gather(*(kafka.push(burst, f"B-{i}") for i in range(BURST)))

        async def burst_done() -> bool:
            return await _count_sent(db, burst) == BURST

        await eventually(burst_done, "the burst", deadline=300)
        cpu = service.cpu_seconds() - cpu_before
        span = await rows(
            db,
            "SELECT extract(epoch FROM max(sent_at) - min(created_at)) AS s, "
            "extract(epoch FROM max(created_at) - min(created_at)) AS recorded "
            "FROM export.erp_export WHERE org_id = :o",
            o=burst,
        )
    finally:
        service.kill()

    assert len(box.files()) == RATE * SECONDS + 1 + BURST
    seconds = float(span[0]["s"])
    print(
        f"\nexport latency at {RATE}/s over {SECONDS}s: p50 {_percentile(latencies, 0.5):.3f}s "
        f"p99 {_percentile(latencies, 0.99):.3f}s max {max(latencies):.3f}s"
        f"\nsustained: {BURST} exports recorded and delivered in {seconds:.2f}s "
        f"= {BURST / seconds:.0f} files/s "
        f"(recording them took {float(span[0]['recorded']):.2f}s; "
        f"the service used {cpu:.1f} CPU seconds)"
    )
