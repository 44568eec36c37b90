"""Use cases against fakes of the unit of work and the idempotency cache."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from draft_api.domain import errors
from draft_api.domain.connector import ErpConnector
from draft_api.domain.events import DraftCreated, PushRequested
from draft_api.domain.idempotency import Operation
from draft_api.domain.model import Actor, DraftStatus, ExportStatus, NewLine
from draft_api.service_layer import drafts, push, results, workflow
from draft_api.service_layer.ports import DraftQuery

OPERATOR = Actor(user_id="user-1", org_id="demo")
APPROVER = Actor(user_id="boss-1", org_id="demo")
STRANGER = Actor(user_id="user-9", org_id="other")
TTL = timedelta(hours=24)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def a_line(**overrides: object) -> NewLine:
    values: dict[str, object] = {
        "sku": "SKU-1",
        "description": "Widget",
        "quantity": Decimal("3"),
        "unit": "EA",
        "unit_price": Decimal("9.50"),
        "currency": "EUR",
    }
    values.update(overrides)
    return NewLine(**values)  # type: ignore[arg-type]


async def connect(uow_factory: Any, org: str = "demo", active: bool = True) -> uuid.UUID:
    connection_id = uuid.uuid4()
    await results.record_connector_change(
        uow_factory(),
        uuid.uuid4(),
        ErpConnector(connection_id, org, "ERP", "sftp_dropzone", active, T0),
    )
    return connection_id


async def approved_draft(uow_factory: Any, external_ref: str = "PO-1") -> uuid.UUID:
    draft = await drafts.create_draft(
        uow_factory(),
        OPERATOR,
        drafts.CreateDraft(customer_id="C-1001", external_ref=external_ref, lines=[a_line()]),
    )
    await workflow.validate_draft(uow_factory(), OPERATOR, draft.id)
    await workflow.approve_draft(uow_factory(), APPROVER, draft.id)
    return draft.id


def pushes(store: Any) -> list[PushRequested]:
    return [e for e in store.outbox if isinstance(e, PushRequested)]


async def test_creating_a_draft_stores_it_and_publishes_draft_created(
    uow_factory: Any, store: Any
) -> None:
    draft = await drafts.create_draft(
        uow_factory(),
        OPERATOR,
        drafts.CreateDraft(customer_id="C-1", external_ref=None, lines=[a_line()]),
    )
    assert store.drafts[draft.id].status is DraftStatus.NEW
    assert [type(e) for e in store.outbox] == [DraftCreated]
    assert store.outbox[0].actor_id == "user-1" and store.outbox[0].org_id == "demo"


async def test_another_orgs_draft_is_not_found(uow_factory: Any) -> None:
    draft_id = await approved_draft(uow_factory)
    with pytest.raises(errors.DraftNotFound):
        await drafts.get_draft(uow_factory(), STRANGER, draft_id)
    with pytest.raises(errors.DraftNotFound):
        await workflow.approve_draft(uow_factory(), STRANGER, draft_id)
    page, total = await drafts.list_drafts(uow_factory(), STRANGER, DraftQuery(limit=10))
    assert (page, total) == ([], 0)


async def test_a_duplicate_external_ref_in_the_org_needs_review(uow_factory: Any) -> None:
    await approved_draft(uow_factory, external_ref="PO-9")
    second = await drafts.create_draft(
        uow_factory(),
        OPERATOR,
        drafts.CreateDraft(customer_id="C-1", external_ref="PO-9", lines=[a_line()]),
    )
    validated = await workflow.validate_draft(uow_factory(), OPERATOR, second.id)
    assert validated.status is DraftStatus.NEEDS_REVIEW
    assert [i.code for i in validated.validation_issues] == ["external_ref_duplicate"]


async def test_editing_lines_sends_a_draft_back_to_new(uow_factory: Any, store: Any) -> None:
    draft = await drafts.create_draft(
        uow_factory(),
        OPERATOR,
        drafts.CreateDraft(customer_id="C-1", external_ref=None, lines=[a_line(unit="??")]),
    )
    await workflow.validate_draft(uow_factory(), OPERATOR, draft.id)
    assert store.drafts[draft.id].status is DraftStatus.NEEDS_REVIEW
    await drafts.edit_draft(
        uow_factory(), OPERATOR, drafts.EditDraft(draft_id=draft.id, lines=[a_line()])
    )
    assert store.drafts[draft.id].status is DraftStatus.NEW
    ready = await workflow.validate_draft(uow_factory(), OPERATOR, draft.id)
    assert ready.status is DraftStatus.READY


async def test_push_without_a_connector_is_refused_and_writes_nothing(
    uow_factory: Any, store: Any, cache: Any
) -> None:
    draft_id = await approved_draft(uow_factory)
    await connect(uow_factory, active=False)
    with pytest.raises(errors.NoActiveConnector):
        await push.push_draft(
            uow_factory,
            cache,
            OPERATOR,
            push.PushDraft(draft_id, Operation.PUSH, "k1"),
            key_ttl=TTL,
        )
    assert store.drafts[draft_id].status is DraftStatus.APPROVED
    assert pushes(store) == [] and store.keys == {} and cache.values == {}


async def test_push_then_replay_returns_the_same_export_and_its_status_now(
    uow_factory: Any, store: Any, cache: Any
) -> None:
    draft_id = await approved_draft(uow_factory)
    await connect(uow_factory)
    cmd = push.PushDraft(draft_id, Operation.PUSH, "key-1")
    first = await push.push_draft(uow_factory, cache, OPERATOR, cmd, key_ttl=TTL)
    assert (first.status, first.replayed) == ("PUSHING", False)
    assert (first.draft_status, first.export_status) == ("PUSHING", "PENDING")
    assert cache.values[(draft_id, "key-1")] == str(first.erp_export_id)

    again = await push.push_draft(uow_factory, cache, OPERATOR, cmd, key_ttl=TTL)
    assert (again.erp_export_id, again.status, again.replayed) == (
        first.erp_export_id,
        "PENDING",
        True,
    )
    assert (again.draft_status, again.export_status) == ("PUSHING", "PENDING")
    await results.record_export_result(
        uow_factory(),
        results.ExportResult(uuid.uuid4(), "demo", draft_id, first.erp_export_id, True, T0),
    )
    cache.down = True  # the Postgres path gives the same answer
    later = await push.push_draft(uow_factory, cache, OPERATOR, cmd, key_ttl=TTL)
    assert (later.erp_export_id, later.status) == (first.erp_export_id, "SENT")
    assert (later.draft_status, later.export_status) == ("PUSHED", "SENT")
    assert len(pushes(store)) == 1


async def test_the_same_key_for_another_request_is_a_mismatch(uow_factory: Any, cache: Any) -> None:
    first_draft = await approved_draft(uow_factory, "PO-1")
    other_draft = await approved_draft(uow_factory, "PO-2")
    await connect(uow_factory)
    await push.push_draft(
        uow_factory,
        cache,
        OPERATOR,
        push.PushDraft(first_draft, Operation.PUSH, "k"),
        key_ttl=TTL,
    )
    with pytest.raises(errors.IdempotencyKeyMismatch):
        await push.push_draft(
            uow_factory,
            cache,
            OPERATOR,
            push.PushDraft(other_draft, Operation.PUSH, "k"),
            key_ttl=TTL,
        )
    with pytest.raises(errors.IdempotencyKeyMismatch):
        await push.push_draft(
            uow_factory,
            cache,
            OPERATOR,
            push.PushDraft(first_draft, Operation.RETRY_PUSH, "k"),
            key_ttl=TTL,
        )


async def test_a_key_in_flight_is_refused(uow_factory: Any, cache: Any) -> None:
    draft_id = await approved_draft(uow_factory)
    await connect(uow_factory)
    cache.values[(draft_id, "k")] = "in-flight:someone-else"
    with pytest.raises(errors.IdempotencyKeyInFlight):
        await push.push_draft(
            uow_factory,
            cache,
            OPERATOR,
            push.PushDraft(draft_id, Operation.PUSH, "k"),
            key_ttl=TTL,
        )


async def test_a_refused_push_releases_the_in_flight_marker(uow_factory: Any, cache: Any) -> None:
    draft = await drafts.create_draft(
        uow_factory(),
        OPERATOR,
        drafts.CreateDraft(customer_id="C-1", external_ref=None, lines=[a_line()]),
    )
    with pytest.raises(errors.DraftNotApproved):
        await push.push_draft(
            uow_factory,
            cache,
            OPERATOR,
            push.PushDraft(draft.id, Operation.PUSH, "k"),
            key_ttl=TTL,
        )
    assert cache.values == {}


async def test_a_malformed_key_is_refused_before_anything_happens(
    uow_factory: Any, cache: Any, store: Any
) -> None:
    draft_id = await approved_draft(uow_factory)
    commits = store.commits
    with pytest.raises(errors.IdempotencyKeyInvalid):
        await push.push_draft(
            uow_factory,
            cache,
            OPERATOR,
            push.PushDraft(draft_id, Operation.PUSH, "a b"),
            key_ttl=TTL,
        )
    assert store.commits == commits


async def test_a_push_without_a_key_is_not_deduplicated(
    uow_factory: Any, store: Any, cache: Any
) -> None:
    draft_id = await approved_draft(uow_factory)
    await connect(uow_factory)
    cmd = push.PushDraft(draft_id, Operation.PUSH)
    await push.push_draft(uow_factory, cache, OPERATOR, cmd, key_ttl=TTL)
    with pytest.raises(errors.DraftNotApproved):
        await push.push_draft(uow_factory, cache, OPERATOR, cmd, key_ttl=TTL)
    assert len(pushes(store)) == 1


async def test_failed_export_then_retry_push_gets_attempt_two(
    uow_factory: Any, store: Any, cache: Any
) -> None:
    draft_id = await approved_draft(uow_factory)
    await connect(uow_factory)
    first = await push.push_draft(
        uow_factory, cache, OPERATOR, push.PushDraft(draft_id, Operation.PUSH), key_ttl=TTL
    )
    error = {"error_code": "sftp_unreachable", "error_message": "down"}
    changed = await results.record_export_result(
        uow_factory(),
        results.ExportResult(uuid.uuid4(), "demo", draft_id, first.erp_export_id, False, T0, error),
    )
    assert changed and store.drafts[draft_id].status is DraftStatus.ERROR
    retry = await push.push_draft(
        uow_factory,
        cache,
        OPERATOR,
        push.PushDraft(draft_id, Operation.RETRY_PUSH),
        key_ttl=TTL,
    )
    assert retry.erp_export_id != first.erp_export_id
    draft = store.drafts[draft_id]
    assert [(a.attempt, a.status) for a in draft.attempts] == [
        (1, ExportStatus.FAILED),
        (2, ExportStatus.PENDING),
    ]
    assert draft.attempts[0].error == error
    assert [(p.attempt, p.is_retry) for p in pushes(store)] == [(1, False), (2, True)]


async def test_a_redelivered_result_is_applied_once(uow_factory: Any, cache: Any) -> None:
    draft_id = await approved_draft(uow_factory)
    await connect(uow_factory)
    pushed = await push.push_draft(
        uow_factory, cache, OPERATOR, push.PushDraft(draft_id, Operation.PUSH), key_ttl=TTL
    )
    event = results.ExportResult(uuid.uuid4(), "demo", draft_id, pushed.erp_export_id, True, T0)
    assert await results.record_export_result(uow_factory(), event) is True
    assert await results.record_export_result(uow_factory(), event) is False


async def _connector_change(
    uow_factory: Any,
    connection: uuid.UUID,
    active: bool,
    at: datetime,
    *,
    org: str = "demo",
    keyed: bool = True,
) -> None:
    await results.record_connector_change(
        uow_factory(),
        uuid.uuid4(),
        ErpConnector(connection, org, "ERP", "sftp_dropzone", active, at),
        keyed_by_connection=keyed,
    )


async def _has_active(uow_factory: Any, org: str = "demo") -> bool:
    uow = uow_factory()
    async with uow:
        return bool(await uow.connectors.has_active(org))


async def test_a_far_future_connector_change_holds_only_until_the_next_one(
    uow_factory: Any,
) -> None:
    connection = uuid.uuid4()
    await _connector_change(uow_factory, connection, False, T0 + timedelta(days=365 * 1000))
    assert await _has_active(uow_factory) is False
    # the next change export-service publishes (activate through the API) takes effect,
    # although its changed_at is long before the forged one
    await _connector_change(uow_factory, connection, True, T0)
    assert await _has_active(uow_factory) is True


async def test_an_org_keyed_record_only_fills_in_an_unknown_connection(
    uow_factory: Any,
) -> None:
    connection = uuid.uuid4()
    await _connector_change(uow_factory, connection, True, T0, keyed=True)
    await _connector_change(uow_factory, connection, False, T0 + timedelta(days=1), keyed=False)
    assert await _has_active(uow_factory) is True

    other = uuid.uuid4()
    await _connector_change(uow_factory, other, True, T0, org="org-b", keyed=False)
    assert await _has_active(uow_factory, "org-b") is True


async def test_a_connector_change_never_moves_a_connection_to_another_org(
    uow_factory: Any,
) -> None:
    connection = uuid.uuid4()
    await _connector_change(uow_factory, connection, True, T0)
    await _connector_change(uow_factory, connection, False, T0, org="org-b")
    assert await _has_active(uow_factory) is True
    assert await _has_active(uow_factory, "org-b") is False
