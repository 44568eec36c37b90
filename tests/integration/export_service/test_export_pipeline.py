"""export-service in-process against real Kafka, Postgres and the OpenSSH dropzone."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest
from export_service.bootstrap import ROLES, make_app
from export_service.domain.renderers import FileFormat, render
from export_service.settings import ExportSettings
from orderflow_shared.contracts import OrderSnapshot

from .conftest import event_data, eventually, make_settings, outbox_count, rows


@dataclass
class Running:
    client: httpx.AsyncClient
    settings: ExportSettings


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_service(export_env, tmp_path) -> AsyncIterator[Start]:
    started: list[tuple[Any, Any, httpx.AsyncClient]] = []

    async def start(**overrides: Any) -> Running:
        settings = make_settings(
            export_env, export_storage_dir=str(tmp_path / "storage"), **overrides
        )
        app = make_app(settings, roles=ROLES)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://export-service"
        )
        started.append((app, lifespan, client))
        return Running(client, settings)

    yield start
    for _app, lifespan, client in reversed(started):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


def sftp_body(dropzone, box, **sftp: Any) -> dict[str, Any]:
    body = {
        "host": dropzone.host,
        "port": dropzone.port,
        "username": dropzone.username,
        "remote_directory": box.remote,
        "host_key_fingerprint": dropzone.fingerprint,
        "private_key": dropzone.private_key,
        "password": None,
    }
    body.update(sftp)
    return body


async def create_connection(
    service: Running, infra, org: str, sftp: dict[str, Any], file_format: str = "csv"
) -> dict[str, Any]:
    response = await service.client.post(
        "/erp-connections",
        headers=infra.auth_headers(roles=["admin"], org=org),
        json={
            "name": "ERP dropzone",
            "connector_type": "sftp_dropzone",
            "is_active": True,
            "file_format": file_format,
            "file_name_template": "{external_ref}_{export_id}",
            "sftp": sftp,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def export_row(db, export_id: Any, *statuses: str) -> dict[str, Any] | None:
    found = await rows(db, "SELECT * FROM export.erp_export WHERE id = :id", id=export_id)
    if found and (not statuses or found[0]["status"] in statuses):
        return dict(found[0])
    return None


@pytest.mark.parametrize("file_format", ["csv", "json", "xml"])
async def test_a_pushed_order_arrives_once_with_the_right_content(
    infra, dropzone, box, kafka, db, start_service, file_format
):
    service = await start_service()
    org = new_org()
    await create_connection(service, infra, org, sftp_body(dropzone, box), file_format)
    pushed = await kafka.push(org)
    export_id = pushed.parse().erp_export_id

    row = await eventually(lambda: export_row(db, export_id, "SENT"), "the export to be SENT")
    assert row["sent_at"] is not None and row["attempts"] == 1
    expected = render(
        OrderSnapshot.model_validate(row["snapshot"]), FileFormat(file_format), export_id
    )
    assert box.files() == [row["file_name"]]
    assert row["file_name"] == f"PO-4711_{export_id}.{file_format}"
    assert (box.path / row["file_name"]).read_bytes() == expected
    assert row["remote_path"] == f"{box.remote}/{row['file_name']}"
    # the stack's own export-service (if running) may have been the one delivering
    stores = [service.settings.export_storage_dir, Path(infra.storage_dir)]
    stored = [d / row["export_storage_key"] for d in stores]
    assert expected in [p.read_bytes() for p in stored if p.exists()]
    assert row["checksum"] == hashlib.sha256(expected).hexdigest()

    (sent,) = await kafka.events("export.sent", {pushed.subject}, 1)
    data = event_data(sent)
    assert data["erp_export_id"] == str(export_id)
    assert data["checksum_sha256"] == row["checksum"]
    assert data["size_bytes"] == len(expected)
    assert data["remote_path"] == row["remote_path"]
    assert sent.key == str(pushed.parse().draft_id) and sent.org_id == org


async def test_a_redelivered_push_request_makes_one_export_and_one_file(
    infra, dropzone, box, kafka, db, start_service
):
    service = await start_service()
    org = new_org()
    await create_connection(service, infra, org, sftp_body(dropzone, box))
    pushed = await kafka.push(org)
    # the same record again (a redelivery after a rebalance)
    await kafka.producer.send_and_wait(
        pushed.topic, pushed.data, key=pushed.key.encode(), headers=pushed.kafka_headers()
    )
    export_id = pushed.parse().erp_export_id
    await eventually(lambda: export_row(db, export_id, "SENT"), "the export to be SENT")
    assert await outbox_count(db, "export.sent", pushed.key) == 1
    assert len(box.files()) == 1
    found = await rows(
        db,
        "SELECT count(*) AS n FROM export.erp_export WHERE draft_order_id = :d",
        d=pushed.parse().draft_id,
    )
    assert found[0]["n"] == 1


async def test_connections_keep_their_secrets_and_stay_in_their_org(
    infra, dropzone, box, kafka, db, start_service
):
    service = await start_service()
    org = new_org()
    admin = infra.auth_headers(roles=["admin"], org=org)
    first = await create_connection(service, infra, org, sftp_body(dropzone, box))
    assert first["sftp"]["has_private_key"] is True
    assert first["sftp"]["has_password"] is False
    assert "PRIVATE KEY" not in str(first) and "private_key" not in first["sftp"]

    listed = await service.client.get("/erp-connections", headers=admin)
    assert [c["id"] for c in listed.json()] == [first["id"]]
    assert "PRIVATE KEY" not in listed.text

    other_org = infra.auth_headers(roles=["admin"], org=new_org())
    assert (
        await service.client.get(f"/erp-connections/{first['id']}", headers=other_org)
    ).status_code == 404
    viewer = infra.auth_headers(roles=["viewer", "operator"], org=org)
    assert (await service.client.get("/erp-connections", headers=viewer)).status_code == 403
    assert (await service.client.get("/erp-connections")).status_code == 401

    second = await create_connection(service, infra, org, sftp_body(dropzone, box))
    active = await rows(
        db, "SELECT id FROM export.erp_connection WHERE org_id = :org AND is_active", org=org
    )
    assert [str(r["id"]) for r in active] == [second["id"]]

    response = await service.client.post(f"/erp-connections/{first['id']}/activate", headers=admin)
    assert response.json()["is_active"] is True
    renamed = await service.client.patch(
        f"/erp-connections/{second['id']}",
        headers=admin,
        json={"name": "renamed", "sftp": {"port": dropzone.port}},
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "renamed" and renamed.json()["is_active"] is False
    assert renamed.json()["sftp"]["has_private_key"] is True

    stored = await rows(
        db,
        "SELECT secrets_ciphertext, config FROM export.erp_connection WHERE org_id = :o",
        o=org,
    )
    for row in stored:
        assert "PRIVATE KEY" not in row["secrets_ciphertext"]
        assert "PRIVATE KEY" not in str(row["config"])

    changes = await kafka.events("erp_connection.changed", {first["id"], second["id"]}, 8)
    kinds = [(e.subject, event_data(e)["change"]) for e in changes]
    assert (first["id"], "created") in kinds and (first["id"], "deactivated") in kinds
    assert (second["id"], "updated") in kinds
    assert all(e.key == e.subject for e in changes)  # keyed by connection (compaction)
    assert all(b"PRIVATE KEY" not in e.data for e in changes)


@pytest.mark.parametrize(
    ("body", "detail_part"),
    [
        ({"connector_type": "sftp_dropzone"}, "sftp"),
        ({"connector_type": "ftp"}, None),
        ({"connector_type": "sftp_dropzone", "file_name_template": "{external_ref}"}, "export_id"),
        ({"connector_type": "sftp_dropzone", "sftp_fingerprint": "x"}, None),
    ],
)
async def test_bad_connection_bodies_are_4xx_with_detail(
    infra, dropzone, box, start_service, body, detail_part
):
    service = await start_service()
    payload = {"name": "x", **body}
    if "file_name_template" in body:
        payload["sftp"] = sftp_body(dropzone, box)
    response = await service.client.post(
        "/erp-connections", headers=infra.auth_headers(roles=["admin"]), json=payload
    )
    assert response.status_code == 422, response.text
    assert "detail" in response.json()
    if detail_part:
        said = response.json()["detail"] + str(response.json().get("errors", ""))
        assert detail_part in said


async def test_a_refused_body_never_echoes_the_secrets_it_carried(infra, start_service):
    service = await start_service()
    secret = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA=="
    response = await service.client.post(
        "/erp-connections",
        headers=infra.auth_headers(roles=["admin"]),
        json={
            "name": "x",
            "connector_type": "sftp_dropzone",
            "sftp": {"port": "not-a-port", "private_key": secret, "password": "hunter2-secret"},
        },
    )
    assert response.status_code == 422
    assert "c2VjcmV0" not in response.text and "hunter2" not in response.text


async def test_bad_fingerprint_and_unknown_ids_are_4xx(infra, dropzone, box, start_service):
    service = await start_service()
    admin = infra.auth_headers(roles=["admin"])
    bad = sftp_body(dropzone, box, host_key_fingerprint="MD5:aa:bb")
    response = await service.client.post(
        "/erp-connections",
        headers=admin,
        json={"name": "x", "connector_type": "sftp_dropzone", "sftp": bad},
    )
    assert response.status_code == 422 and "fingerprint" in response.json()["detail"]
    missing = await service.client.get(f"/erp-connections/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404 and missing.json()["detail"]
    malformed = await service.client.post("/erp-connections/not-a-uuid/activate", headers=admin)
    assert malformed.status_code == 422


async def test_the_connection_test_checks_host_key_and_directory(
    infra, dropzone, box, start_service
):
    service = await start_service()
    org = new_org()
    admin = infra.auth_headers(roles=["admin"], org=org)
    good = await create_connection(service, infra, org, sftp_body(dropzone, box))
    report = await service.client.post(f"/erp-connections/{good['id']}/test", headers=admin)
    assert report.status_code == 200 and report.json()["ok"] is True, report.text
    assert {c["name"] for c in report.json()["checks"]} >= {"host_key", "remote_directory"}
    assert box.files() == []
    wrong = await create_connection(
        service,
        infra,
        org,
        sftp_body(dropzone, box, host_key_fingerprint="SHA256:" + "C" * 43),
    )
    report = await service.client.post(f"/erp-connections/{wrong['id']}/test", headers=admin)
    assert report.json()["ok"] is False
    assert report.json()["error_code"] == "host_key_mismatch"


async def test_a_push_without_active_connection_fails_at_once(kafka, db, start_service):
    await start_service()
    pushed = await kafka.push(new_org())
    export_id = pushed.parse().erp_export_id
    row = await eventually(lambda: export_row(db, export_id, "FAILED"), "the export to fail")
    assert row["error_json"]["code"] == "no_active_connection"
    assert row["attempts"] == 0
    (failed,) = await kafka.events("export.failed", {pushed.subject}, 1)
    assert event_data(failed)["error_code"] == "no_active_connection"
    assert event_data(failed)["permanent"] is True


def _other_key() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"host_key_fingerprint": "SHA256:" + "D" * 43}, "host_key_mismatch"),
        ({"private_key": "other"}, "auth_failed"),
        ({"remote_directory": "/inbox/missing-dir"}, "remote_dir_missing"),
    ],
)
async def test_permanent_errors_fail_at_the_first_attempt(
    infra, dropzone, box, kafka, db, start_service, change, code
):
    service = await start_service()
    org = new_org()
    if change.get("private_key") == "other":
        change = {"private_key": _other_key()}
    await create_connection(service, infra, org, sftp_body(dropzone, box, **change))
    pushed = await kafka.push(org)
    export_id = pushed.parse().erp_export_id
    row = await eventually(lambda: export_row(db, export_id, "FAILED"), "the export to fail")
    assert row["attempts"] == 1
    assert row["error_json"]["code"] == code
    (failed,) = await kafka.events("export.failed", {pushed.subject}, 1)
    assert event_data(failed)["error_code"] == code and event_data(failed)["permanent"]
    assert box.files() == []


@pytest.mark.usefixtures("exclusive")
async def test_sshd_down_past_the_deadline_fails_the_export_then_a_new_push_delivers(
    infra, dropzone, box, kafka, db, start_service
):
    service = await start_service(
        export_delivery_deadline_seconds=4,
        export_backoff_base_seconds=0.1,
        export_backoff_max_seconds=0.2,
        export_circuit_failure_threshold=1000,  # every attempt goes to the dropzone
    )
    org = new_org()
    await create_connection(service, infra, org, sftp_body(dropzone, box))
    dropzone.stop_sshd()
    try:
        pushed = await kafka.push(org)
        export_id = pushed.parse().erp_export_id
        row = await eventually(lambda: export_row(db, export_id, "FAILED"), "the export to fail")
    finally:
        dropzone.start_sshd()
    assert row["attempts"] >= 3  # retried for the whole deadline, not a count
    assert row["error_json"]["code"] == "connection_refused"
    assert row["error_json"]["deadline_passed"] is True
    (failed,) = await kafka.events("export.failed", {pushed.subject}, 1)
    assert event_data(failed)["attempts"] == row["attempts"]
    assert event_data(failed)["permanent"] is False
    assert "deadline" in event_data(failed)["error_message"]
    delayed = await kafka.events("export.delayed", {pushed.subject}, row["attempts"] - 1)
    # each attempt was followed by a wait, but one at the deadline itself fails at once
    assert row["attempts"] - 1 <= len({e.id for e in delayed}) <= row["attempts"]
    assert {event_data(e)["reason"] for e in delayed} == {"waiting_for_dropzone"}
    assert box.files() == []
    again = await kafka.push(org)  # what retry-push sends: a new export
    row = await eventually(
        lambda: export_row(db, again.parse().erp_export_id, "SENT"), "the new export to be SENT"
    )
    assert box.files() == [row["file_name"]]


@pytest.mark.usefixtures("exclusive")
async def test_sshd_back_before_the_deadline_lets_the_export_finish(
    infra, dropzone, box, kafka, db, start_service
):
    service = await start_service(
        export_delivery_deadline_seconds=60,
        export_backoff_base_seconds=0.2,
        export_backoff_max_seconds=0.5,
    )
    org = new_org()
    await create_connection(service, infra, org, sftp_body(dropzone, box))
    dropzone.stop_sshd()
    try:
        pushed = await kafka.push(org)
        export_id = pushed.parse().erp_export_id

        async def retried() -> bool:
            row = await export_row(db, export_id, "PENDING")
            return bool(row and row["attempts"] >= 2)

        await eventually(retried, "two failed attempts")
        waiting = await export_row(db, export_id, "PENDING")
        assert waiting is not None
        assert waiting["error_json"]["reason"] == "waiting_for_dropzone"
        assert waiting["next_attempt_at"] <= waiting["deliver_by"]
    finally:
        dropzone.start_sshd()
    row = await eventually(lambda: export_row(db, export_id, "SENT"), "the export to be SENT")
    assert row["attempts"] >= 3 and row["error_json"] is None
    assert box.files() == [row["file_name"]]
    assert await outbox_count(db, "export.failed", pushed.key) == 0
    assert await outbox_count(db, "export.sent", pushed.key) == 1
    assert await outbox_count(db, "export.delayed", pushed.key) >= 2


async def test_hostile_references_land_sanitised_inside_the_remote_directory(
    infra, dropzone, box, kafka, db, start_service
):
    service = await start_service()
    org = new_org()
    await create_connection(service, infra, org, sftp_body(dropzone, box))
    hostile = ["../../etc/passwd", "a\x00b/../../x", "x" * 5000, "..", "/abs/path"]
    pushed = [await kafka.push(org, ref) for ref in hostile]
    for envelope in pushed:
        export_id = envelope.parse().erp_export_id
        row = await eventually(lambda e=export_id: export_row(db, e, "SENT"), "SENT")
        assert row["remote_path"] == f"{box.remote}/{row['file_name']}"
        assert "/" not in row["file_name"] and not row["file_name"].startswith(".")
        assert str(export_id) in row["file_name"]
    assert len(box.files()) == len(hostile)
    ids = [str(e.parse().erp_export_id) for e in pushed]
    outside = [p for p in dropzone.inbox.iterdir() if any(i in p.name for i in ids)]
    assert outside == []  # nothing landed next to the box
