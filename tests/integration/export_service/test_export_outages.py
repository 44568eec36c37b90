"""Real dropzone outages against the real sshd: exports wait (the circuit opens, probes
go through one at a time) and every one is delivered once the dropzone is back, as
long as the outage ends before the deadline (issue 16)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from export_service.bootstrap import ROLES, make_app, make_role_app

from .conftest import eventually, make_settings, outbox_count, rows
from .test_export_pipeline import Running, create_connection, new_org, sftp_body

pytestmark = pytest.mark.usefixtures("exclusive")


@pytest.fixture
async def start_service(export_env, tmp_path) -> AsyncIterator[Callable[..., Any]]:
    """export-service in this process with the given settings: the API with every role,
    and a second delivery worker with its own pools (as a second `worker` process)."""
    started: list[tuple[Any, httpx.AsyncClient]] = []
    workers: list[Any] = []

    async def start(**overrides: Any) -> Running:
        settings = make_settings(
            export_env, export_storage_dir=str(tmp_path / "storage"), **overrides
        )
        app = make_app(settings, roles=ROLES)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        worker = make_role_app(settings, "worker")
        workers.append(worker.router.lifespan_context(worker))
        await workers[-1].__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://export-service"
        )
        started.append((lifespan, client))
        return Running(client, settings)

    yield start
    for worker in reversed(workers):
        await worker.__aexit__(None, None, None)
    for lifespan, client in reversed(started):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


#: test-sized delivery settings; the deadline of each test is its own
FAST = {
    "export_backoff_base_seconds": 0.2,
    "export_backoff_max_seconds": 2,
    "export_circuit_failure_threshold": 5,
    "export_circuit_probe_interval_seconds": 1,
}


async def statuses(db, export_ids: list[Any]) -> dict[str, str]:
    found = await rows(
        db,
        "SELECT id::text AS id, status FROM export.erp_export WHERE id = ANY(:ids)",
        ids=export_ids,
    )
    return {r["id"]: r["status"] for r in found}


async def circuit_changes(db, connection_id: str) -> list[str]:
    found = await rows(
        db,
        "SELECT payload FROM export.outbox WHERE topic = 'export.circuit_changed'"
        " AND key = :k ORDER BY id",
        k=connection_id,
    )
    return [json.loads(bytes(r["payload"]))["state"] for r in found]


async def circuit_state(service, infra, org: str, connection_id: str) -> str:
    response = await service.client.get(
        f"/erp-connections/{connection_id}", headers=infra.auth_headers(roles=["admin"], org=org)
    )
    assert response.status_code == 200, response.text
    return str(response.json()["circuit"]["state"])


async def outage(dropzone, schedule: list[tuple[str, float]]) -> None:
    """Run a fault schedule: ("down"|"up", seconds) in turn; sshd is up at the end."""
    try:
        for state, seconds in schedule:
            (dropzone.stop_sshd if state == "down" else dropzone.start_sshd)()
            await asyncio.sleep(seconds)  # the length of the outage is the test's input
    finally:
        dropzone.start_sshd()


async def run_outage(
    infra, dropzone, box, kafka, db, start_service, *, n, schedule, deadline
) -> dict[str, Any]:
    service = await start_service(export_delivery_deadline_seconds=deadline, **FAST)
    org = new_org()
    connection = await create_connection(service, infra, org, sftp_body(dropzone, box))
    dropzone.stop_sshd()
    try:
        pushed = [await kafka.push(org) for _ in range(n)]
        ids = [str(p.parse().erp_export_id) for p in pushed]

        async def told() -> bool:
            # each one failed, or was held untried by the open circuit: all say they wait
            found = await rows(
                db,
                "SELECT count(*) AS n FROM export.erp_export WHERE id = ANY(:ids)"
                " AND error_json->>'reason' = 'waiting_for_dropzone'",
                ids=ids,
            )
            return int(found[0]["n"]) == n

        await eventually(told, "every export to say it waits for the dropzone")

        async def opened() -> bool:
            state = await circuit_state(service, infra, org, connection["id"])
            return state in ("open", "half_open")

        await eventually(opened, "the circuit to open")
        waiting = await rows(
            db,
            "SELECT status, error_json FROM export.erp_export WHERE id = ANY(:ids)",
            ids=ids,
        )
        assert all(r["status"] in ("PENDING", "DELIVERING") for r in waiting)
        assert any((r["error_json"] or {}).get("reason") == "waiting_for_dropzone" for r in waiting)
    finally:
        await outage(dropzone, schedule)

    async def all_sent() -> bool:
        return set((await statuses(db, ids)).values()) == {"SENT"}

    await eventually(all_sent, f"all {n} exports to be SENT", deadline=deadline + 30)
    sent = await rows(
        db,
        "SELECT id::text AS id, file_name, checksum FROM export.erp_export WHERE id = ANY(:ids)",
        ids=ids,
    )
    assert sorted(box.files()) == sorted(r["file_name"] for r in sent)  # one file each
    for r in sent:
        content = (box.path / r["file_name"]).read_bytes()
        assert hashlib.sha256(content).hexdigest() == r["checksum"]
    for envelope in pushed:
        assert await outbox_count(db, "export.failed", envelope.key) == 0
        assert await outbox_count(db, "export.sent", envelope.key) == 1
    delayed = sum([await outbox_count(db, "export.delayed", e.key) for e in pushed])
    assert delayed >= n  # every export said at least once that it waits
    changes = await circuit_changes(db, connection["id"])
    assert changes[0] == "open" and changes[-1] == "closed"
    assert await circuit_state(service, infra, org, connection["id"]) == "closed"
    return {"changes": changes, "delayed": delayed}


async def test_the_issue_repro_down_20s_up_5s_down_10s_ends_with_every_export_sent(
    infra, dropzone, box, kafka, db, start_service
):
    # pushes arrive while sshd is down; it stays down 20 s, is up 5 s, down 10 s
    await run_outage(
        infra,
        dropzone,
        box,
        kafka,
        db,
        start_service,
        n=20,
        schedule=[("down", 20), ("up", 5), ("down", 10)],
        deadline=90,
    )


async def test_while_the_circuit_is_open_waiting_exports_spend_no_attempts(
    infra, dropzone, box, kafka, db, start_service
):
    service = await start_service(
        export_delivery_deadline_seconds=120,
        **{**FAST, "export_circuit_probe_interval_seconds": 4, "export_backoff_max_seconds": 4},
    )
    org = new_org()
    connection = await create_connection(service, infra, org, sftp_body(dropzone, box))
    dropzone.stop_sshd()
    try:
        ids = [str((await kafka.push(org)).parse().erp_export_id) for _ in range(30)]

        async def opened() -> bool:
            return (await circuit_state(service, infra, org, connection["id"])) != "closed"

        await eventually(opened, "the circuit to open")

        async def attempts() -> int:
            found = await rows(
                db,
                "SELECT coalesce(sum(attempts), 0) AS n FROM export.erp_export"
                " WHERE id = ANY(:ids)",
                ids=ids,
            )
            return int(found[0]["n"])

        before = await attempts()
        await asyncio.sleep(10)  # two probe intervals and more of the exports' own backoff
        spent = await attempts() - before
        # only probes ran (one per interval, 4 s then 8 s): not 30 exports every 4 s
        assert spent <= 3, spent
    finally:
        dropzone.start_sshd()

    async def all_sent() -> bool:
        return set((await statuses(db, ids)).values()) == {"SENT"}

    await eventually(all_sent, "all exports to be SENT", deadline=60)
    assert len(box.files()) == 30


async def test_deliveries_in_flight_per_connection_stay_within_the_bound(
    infra, dropzone, box, kafka, db, start_service
):
    bound = 3
    service = await start_service(export_connection_max_in_flight=bound, **FAST)
    org = new_org()
    connection = await create_connection(service, infra, org, sftp_body(dropzone, box))
    dropzone.stop_sshd()
    try:
        ids = [str((await kafka.push(org)).parse().erp_export_id) for _ in range(60)]

        async def recorded() -> bool:
            return len(await statuses(db, ids)) == 60

        await eventually(recorded, "60 exports")
    finally:
        dropzone.start_sshd()  # the backlog drains: it must not come as a burst
    peak = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + 60
    while loop.time() < end:
        found = await rows(
            db,
            "SELECT count(*) FILTER (WHERE status = 'DELIVERING' AND lease_expires_at > now())"
            " AS busy, count(*) FILTER (WHERE status <> 'SENT') AS left"
            " FROM export.erp_export WHERE connection_id = :c",
            c=connection["id"],
        )
        peak = max(peak, int(found[0]["busy"]))
        if int(found[0]["left"]) == 0:
            break
        await asyncio.sleep(0.005)  # sampling the in-flight count, not waiting for it
    assert set((await statuses(db, ids)).values()) == {"SENT"}
    assert 1 <= peak <= bound, peak
    assert len(box.files()) == 60


@pytest.mark.slow
async def test_a_three_minute_outage_ends_with_every_export_sent(
    infra, dropzone, box, kafka, db, start_service
):
    await run_outage(
        infra,
        dropzone,
        box,
        kafka,
        db,
        start_service,
        n=20,
        schedule=[("down", 180)],
        deadline=300,
    )


async def test_a_connection_sets_its_own_delivery_deadline_through_the_api(
    infra, dropzone, box, kafka, db, start_service
):
    service = await start_service(export_delivery_deadline_seconds=90, **FAST)
    org = new_org()
    admin = infra.auth_headers(roles=["admin"], org=org)
    connection = await create_connection(service, infra, org, sftp_body(dropzone, box))
    assert connection["delivery_deadline_seconds"] is None  # the service's default
    url = f"/erp-connections/{connection['id']}"
    patched = await service.client.patch(
        url, headers=admin, json={"delivery_deadline_seconds": 7200}
    )
    assert patched.status_code == 200, patched.text
    assert (await service.client.get(url, headers=admin)).json()["delivery_deadline_seconds"] == (
        7200
    )
    for refused in (0, 30 * 24 * 3600 + 1, "7200", 1.5):
        answer = await service.client.patch(
            url, headers=admin, json={"delivery_deadline_seconds": refused}
        )
        assert answer.status_code == 422, (refused, answer.text)
    export_id = str((await kafka.push(org)).parse().erp_export_id)

    async def recorded() -> bool:
        return bool(await rows(db, "SELECT 1 FROM export.erp_export WHERE id = :i", i=export_id))

    await eventually(recorded, "the export to be recorded")
    (row,) = await rows(
        db,
        "SELECT extract(epoch FROM deliver_by - created_at) AS budget"
        " FROM export.erp_export WHERE id = :i",
        i=export_id,
    )
    assert float(row["budget"]) == 7200
