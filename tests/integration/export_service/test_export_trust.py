"""What export-service refuses on its own, against the real broker, sshd and file system:
push requests whose org contradicts the order, local directories outside the org's
root (also when a symlink is swapped in later), SFTP targets on loopback outside
development, and CSV cells a spreadsheet would run."""

# ruff: noqa: F811
from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from orderflow_shared.contracts import DraftPushRequestedV1, Topic
from orderflow_shared.messaging.envelope import Envelope

from .conftest import DEADLINE, eventually, rows, snapshot

# the pipeline tests' fixture (tests take it as a parameter, hence F811 off for this file)
from .test_export_pipeline import (
    create_connection,
    export_row,
    new_org,
    sftp_body,
    start_service,  # noqa: F401
)

#: the revision the restatement migration follows (downgrading to it undoes the restatement)
RESTATEMENT_PARENT = "0002_deadline_circuit"


@pytest.fixture
async def producer(infra: Any) -> AsyncIterator[AIOKafkaProducer]:
    # draft-api's own credentials: the content is what is hostile here
    client = AIOKafkaProducer(**infra.kafka_options("draft-api"))
    await client.start()
    yield client
    await client.stop()


async def push(
    producer: AIOKafkaProducer, envelope_org: str, order_org: str, description: str = "Widget"
) -> Envelope:
    order = snapshot(order_org).model_copy()
    line = order.lines[0].model_copy(update={"description": description})
    order = order.model_copy(update={"lines": [line]})
    envelope = Envelope.wrap(
        DraftPushRequestedV1(
            draft_id=order.draft_id,
            erp_export_id=uuid.uuid4(),
            attempt=1,
            requested_at=datetime.now(UTC),
            order=order,
        ),
        source="/orderflow/draft-api",
        subject=str(order.draft_id),
        org_id=envelope_org,
        actor_id="user-1",
    )
    await producer.send_and_wait(
        envelope.topic, envelope.data, key=envelope.key.encode(), headers=envelope.kafka_headers()
    )
    return envelope


async def dead_letter_reason(infra: Any, event_id: uuid.UUID) -> str | None:
    """The dlt_reason of the dead letter of `event_id`, reading the topic from the start."""
    consumer = AIOKafkaConsumer(
        Topic.DEAD_LETTER,
        **infra.kafka_options("admin"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + DEADLINE
        while loop.time() < end:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for record in records:
                    headers = {k: (v or b"").decode(errors="replace") for k, v in record.headers}
                    if headers.get("ce_id") == str(event_id) and "dlt_reason" in headers:
                        return headers["dlt_reason"]
    finally:
        await consumer.stop()
    return None


@pytest.mark.usefixtures("exclusive")
async def test_a_push_request_for_another_orgs_order_is_dead_lettered_not_delivered(
    infra, dropzone, box, db, start_service, producer
):
    service = await start_service()
    victim, attacker = new_org(), new_org()
    for org in (victim, attacker):
        await create_connection(service, infra, org, sftp_body(dropzone, box))
    forged = await push(producer, envelope_org=attacker, order_org=victim)

    reason = await dead_letter_reason(infra, forged.id)
    assert reason is not None and reason.startswith("refused: envelope org")
    assert f"{victim!r}" in reason
    export_id = forged.parse().erp_export_id
    assert await export_row(db, export_id) is None

    honest = await push(producer, envelope_org=victim, order_org=victim)
    row = await eventually(
        lambda: export_row(db, honest.parse().erp_export_id, "SENT"), "the honest export"
    )
    assert box.files() == [row["file_name"]]  # only the honest file


async def test_a_delivered_csv_has_formula_cells_neutralised_unless_turned_off(
    infra, dropzone, box, db, start_service, producer
):
    service = await start_service()
    org = new_org()
    connection = await create_connection(service, infra, org, sftp_body(dropzone, box))
    assert connection["csv_formula_guard"] is True
    hostile = '=HYPERLINK("http://evil.example","x")'
    guarded = await push(producer, org, org, description=hostile)
    row = await eventually(
        lambda: export_row(db, guarded.parse().erp_export_id, "SENT"), "the guarded export"
    )
    content = (box.path / row["file_name"]).read_text()
    assert ',"\'=HYPERLINK(""http://evil.example"",""x"")",' in content
    cells = list(csv.reader(io.StringIO(content, newline="")))
    assert cells[1][6] == "'" + hostile

    admin = infra.auth_headers(roles=["admin"], org=org)
    patched = await service.client.patch(
        f"/erp-connections/{connection['id']}", headers=admin, json={"csv_formula_guard": False}
    )
    assert patched.status_code == 200 and patched.json()["csv_formula_guard"] is False
    raw = await push(producer, org, org, description=hostile)
    row = await eventually(
        lambda: export_row(db, raw.parse().erp_export_id, "SENT"), "the raw export"
    )
    cells = list(csv.reader(io.StringIO((box.path / row["file_name"]).read_text(), newline="")))
    assert cells[1][6] == hostile


async def test_the_connection_test_and_delivery_refuse_loopback_sftp_unless_allowed(
    infra, dropzone, box, db, start_service, producer
):
    strict = await start_service(orderflow_env="test", export_sftp_allow_private_targets=False)
    org = new_org()
    created = await create_connection(strict, infra, org, sftp_body(dropzone, box))
    admin = infra.auth_headers(roles=["admin"], org=org)
    report = await strict.client.post(f"/erp-connections/{created['id']}/test", headers=admin)
    assert report.status_code == 200
    body = report.json()
    assert body["ok"] is False and body["error_code"] == "invalid_configuration"
    assert body["checks"] == [{"name": "target_allowed", "ok": False, "message": body["message"]}]
    assert "loopback or link-local" in body["message"]

    allowed = await start_service(orderflow_env="test", export_sftp_allow_private_targets=True)
    report = await allowed.client.post(f"/erp-connections/{created['id']}/test", headers=admin)
    assert report.json()["ok"] is True, report.text
    assert report.json()["checks"][0] == {
        "name": "target_allowed",
        "ok": True,
        "message": "the host is not a refused address",
    }


@pytest.mark.usefixtures("exclusive")
async def test_delivery_to_a_loopback_sftp_target_fails_outside_development(
    infra, dropzone, box, db, start_service, producer
):
    strict = await start_service(orderflow_env="test", export_sftp_allow_private_targets=False)
    org = new_org()
    await create_connection(strict, infra, org, sftp_body(dropzone, box))
    refused = await push(producer, org, org)
    row = await eventually(
        lambda: export_row(db, refused.parse().erp_export_id, "FAILED"), "the refused export"
    )
    assert row["error_json"]["code"] == "invalid_configuration"
    assert "loopback or link-local" in row["error_json"]["error"]
    assert box.files() == []


def local_body(directory: str) -> dict[str, Any]:
    return {
        "name": "local",
        "connector_type": "local_dropzone",
        "is_active": True,
        "file_format": "csv",
        "file_name_template": "{external_ref}_{export_id}",
        "local": {"directory": directory},
    }


async def test_local_directories_must_lie_inside_the_orgs_root(infra, tmp_path, start_service):
    root = tmp_path / "roots"
    org, other = new_org(), new_org()
    for name in (org, other):
        (root / name / "in").mkdir(parents=True)
    (root / org / "escape").symlink_to("/etc")
    service = await start_service(export_local_dropzone_roots=str(root))
    admin = infra.auth_headers(roles=["admin"], org=org)
    for directory in (
        "/etc",
        "/",
        str(root),
        str(root / other / "in"),
        f"{root}/{org}/../{other}/in",
        str(root / org / "escape"),
    ):
        response = await service.client.post(
            "/erp-connections", headers=admin, json=local_body(directory)
        )
        assert response.status_code == 403, (directory, response.text)
        assert f"must lie inside {root.resolve() / org}" in response.json()["detail"]

    good = await service.client.post(
        "/erp-connections", headers=admin, json=local_body(str(root / org / "in"))
    )
    assert good.status_code == 201, good.text
    patched = await service.client.patch(
        f"/erp-connections/{good.json()['id']}",
        headers=admin,
        json={"local": {"directory": "/etc"}},
    )
    assert patched.status_code == 403
    report = await service.client.post(f"/erp-connections/{good.json()['id']}/test", headers=admin)
    assert report.json()["ok"] is True, report.text

    disabled = await start_service(export_local_dropzone_roots="")
    refused = await disabled.client.post(
        "/erp-connections", headers=admin, json=local_body(str(root / org / "in"))
    )
    assert refused.status_code == 403
    assert "local_dropzone connector is disabled" in refused.json()["detail"]
    # the connection test of a stored connection that is no longer allowed probes nothing
    report = await disabled.client.post(f"/erp-connections/{good.json()['id']}/test", headers=admin)
    assert report.json()["checks"] == [
        {"name": "directory_allowed", "ok": False, "message": report.json()["message"]}
    ]


@pytest.mark.usefixtures("exclusive")
async def test_a_symlink_swapped_in_after_the_check_does_not_lead_the_write_out(
    infra, tmp_path, db, start_service, producer
):
    root = tmp_path / "roots"
    org = new_org()
    inbox = root / org / "in"
    inbox.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    service = await start_service(export_local_dropzone_roots=str(root))
    admin = infra.auth_headers(roles=["admin"], org=org)
    created = await service.client.post(
        "/erp-connections", headers=admin, json=local_body(str(inbox))
    )
    assert created.status_code == 201, created.text

    first = await push(producer, org, org)
    row = await eventually(
        lambda: export_row(db, first.parse().erp_export_id, "SENT"), "the first local export"
    )
    assert sorted(p.name for p in inbox.iterdir()) == [row["file_name"]]

    # the accepted directory is replaced by a symlink to a directory outside the root
    os.rename(inbox, root / org / "old")
    inbox.symlink_to(outside)
    second = await push(producer, org, org)
    failed = await eventually(
        lambda: export_row(db, second.parse().erp_export_id, "FAILED"), "the refused export"
    )
    assert failed["error_json"]["code"] == "invalid_configuration"
    assert list(outside.iterdir()) == []


@pytest.mark.usefixtures("exclusive")
async def test_the_migration_restates_every_connection_keyed_by_its_id(infra, export_env, db):
    from export_service.entrypoints.cli import downgrade, migrate

    from .conftest import make_settings

    settings = make_settings(export_env)
    downgrade(settings, RESTATEMENT_PARENT)
    connection_id, org = uuid.uuid4(), new_org()
    now = datetime.now(UTC)
    config = {
        "file_format": "csv",
        "file_name_template": "{export_id}",
        "host": "sftp.example",
        "port": 22,
        "username": "erp",
        "remote_directory": "/inbox",
        "host_key_fingerprint": "SHA256:" + "A" * 43,
    }
    infra.psql(
        "INSERT INTO export.erp_connection (id, org_id, name, connector_type, is_active, "
        "config, created_at, updated_at) VALUES (%s, %s, 'legacy', 'sftp_dropzone', false, "
        "%s::jsonb, %s, %s)",
        (connection_id, org, json.dumps(config), now, now),
    )
    migrate(settings)
    found = await rows(
        db,
        "SELECT key, headers, payload FROM export.outbox WHERE key = :k",
        k=str(connection_id),
    )
    assert len(found) == 1
    envelope = Envelope.from_kafka(
        found[0]["key"].encode(),
        bytes(found[0]["payload"]),
        [(name, value.encode()) for name, value in found[0]["headers"]],
    )
    data = envelope.parse()
    assert envelope.org_id == org and envelope.subject == str(connection_id)
    assert data.change == "restated" and data.is_active is False
    assert data.changed_at == now


async def test_restate_connections_queues_each_connection_keyed_by_its_id(
    infra, dropzone, box, db, export_env, start_service
):
    from export_service.entrypoints.cli import restate_connections

    from .conftest import make_settings

    service = await start_service()
    org = new_org()
    created = await create_connection(service, infra, org, sftp_body(dropzone, box))
    before = await rows(
        db, "SELECT count(*) AS n FROM export.outbox WHERE key = :k", k=created["id"]
    )
    restated = await asyncio.to_thread(restate_connections, make_settings(export_env))
    assert restated >= 1
    found = await rows(
        db,
        "SELECT payload FROM export.outbox WHERE key = :k ORDER BY id",
        k=created["id"],
    )
    assert len(found) == before[0]["n"] + 1
    latest = json.loads(bytes(found[-1]["payload"]))
    assert latest["change"] == "restated" and latest["is_active"] is True
    assert latest["org_id"] == org
