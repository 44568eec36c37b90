"""DraftOrder: every transition of the state machine and every refused one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from draft_api.domain import errors
from draft_api.domain.events import DraftApproved, DraftCreated, DraftValidated, PushRequested
from draft_api.domain.model import Actor, DraftOrder, DraftStatus, ExportStatus, NewLine
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OPERATOR = Actor(user_id="user-1", org_id="demo")
APPROVER = Actor(user_id="boss-1", org_id="demo")
ALL = set(DraftStatus)


def line(**overrides: object) -> NewLine:
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


def new_draft(lines: list[NewLine] | None = None, customer: str = "C-1001") -> DraftOrder:
    return DraftOrder.create(
        draft_id=uuid.uuid4(),
        actor=OPERATOR,
        customer_id=customer,
        external_ref="PO-4711",
        lines=[line()] if lines is None else lines,
        now=NOW,
    )


def in_status(status: DraftStatus) -> DraftOrder:
    draft = new_draft()
    if status is DraftStatus.NEW:
        return draft
    if status is DraftStatus.NEEDS_REVIEW:
        draft.lines = []
        draft.validate(actor=OPERATOR, external_ref_taken=False, now=NOW)
        return draft
    draft.validate(actor=OPERATOR, external_ref_taken=False, now=NOW)
    if status is DraftStatus.READY:
        return draft
    draft.approve(actor=APPROVER, now=NOW)
    if status is DraftStatus.APPROVED:
        return draft
    export_id = uuid.uuid4()
    draft.push(actor=OPERATOR, export_id=export_id, has_active_connector=True, now=NOW)
    if status is DraftStatus.PUSHING:
        return draft
    if status is DraftStatus.PUSHED:
        draft.export_sent(export_id, now=NOW)
        return draft
    draft.export_failed(export_id, error={"error_code": "sftp"}, now=NOW)
    return draft


def test_a_new_draft_is_new_and_records_draft_created() -> None:
    draft = new_draft()
    assert draft.status is DraftStatus.NEW
    assert [type(e) for e in draft.events] == [DraftCreated]
    assert draft.lines[0].line_no == 1
    assert draft.total == Decimal("28.50")
    assert draft.currency == "EUR"


@pytest.mark.parametrize("status", sorted(ALL))
def test_fixture_reaches_every_status(status: DraftStatus) -> None:
    assert in_status(status).status is status


def test_validation_without_issues_makes_the_draft_ready() -> None:
    draft = new_draft()
    assert draft.validate(actor=OPERATOR, external_ref_taken=False, now=NOW) == []
    assert draft.status is DraftStatus.READY
    event = draft.events[-1]
    assert isinstance(event, DraftValidated) and event.status == "READY"


def test_validation_with_issues_needs_review_and_lists_them() -> None:
    draft = new_draft(lines=[line(quantity=Decimal(0))])
    issues = draft.validate(actor=OPERATOR, external_ref_taken=False, now=NOW)
    assert draft.status is DraftStatus.NEEDS_REVIEW
    assert [i.code for i in issues] == ["quantity_not_positive"]
    assert draft.validation_issues == issues


@pytest.mark.parametrize("status", [DraftStatus.NEW, DraftStatus.NEEDS_REVIEW, DraftStatus.READY])
def test_editing_sends_an_editable_draft_back_to_new(status: DraftStatus) -> None:
    draft = in_status(status)
    draft.edit(now=NOW, lines=[line(), line(sku="SKU-2")])
    assert draft.status is DraftStatus.NEW
    assert [x.line_no for x in draft.lines] == [1, 2]
    assert draft.validation_issues == []


@pytest.mark.parametrize(
    "status",
    sorted(ALL - {DraftStatus.NEW, DraftStatus.NEEDS_REVIEW, DraftStatus.READY}),
)
def test_editing_or_validating_after_approval_is_refused(status: DraftStatus) -> None:
    draft = in_status(status)
    with pytest.raises(errors.DraftNotEditable):
        draft.edit(now=NOW, customer_id="C-2")
    with pytest.raises(errors.DraftNotValidatable):
        draft.validate(actor=OPERATOR, external_ref_taken=False, now=NOW)
    assert draft.status is status


def test_approving_a_ready_draft_records_who_and_when() -> None:
    draft = in_status(DraftStatus.READY)
    draft.approve(actor=APPROVER, now=NOW)
    assert draft.status is DraftStatus.APPROVED
    assert (draft.approved_by_user_id, draft.approved_at) == ("boss-1", NOW)
    assert isinstance(draft.events[-1], DraftApproved)


@pytest.mark.parametrize("status", sorted(ALL - {DraftStatus.READY}))
def test_approving_anything_but_ready_is_refused(status: DraftStatus) -> None:
    draft = in_status(status)
    with pytest.raises(errors.DraftNotReady, match="Draft must be READY"):
        draft.approve(actor=APPROVER, now=NOW)
    assert draft.status is status


def test_pushing_an_approved_draft_starts_attempt_one_with_a_snapshot() -> None:
    draft = in_status(DraftStatus.APPROVED)
    export_id = uuid.uuid4()
    attempt = draft.push(actor=OPERATOR, export_id=export_id, has_active_connector=True, now=NOW)
    assert draft.status is DraftStatus.PUSHING
    assert draft.current_export_id == export_id
    assert (attempt.attempt, attempt.status) == (1, ExportStatus.PENDING)
    event = draft.events[-1]
    assert isinstance(event, PushRequested)
    assert (event.attempt, event.is_retry, event.erp_export_id) == (1, False, export_id)
    assert event.order.total == Decimal("28.50")
    assert event.order.approved_by_user_id == "boss-1"
    assert event.order.lines[0].line_total == Decimal("28.50")


@pytest.mark.parametrize("status", sorted(ALL - {DraftStatus.APPROVED}))
def test_pushing_anything_but_approved_is_refused(status: DraftStatus) -> None:
    draft = in_status(status)
    with pytest.raises(errors.DraftNotApproved, match="Draft must be APPROVED"):
        draft.push(actor=OPERATOR, export_id=uuid.uuid4(), has_active_connector=True, now=NOW)
    assert draft.status is status


def test_pushing_without_an_active_connector_is_refused() -> None:
    draft = in_status(DraftStatus.APPROVED)
    with pytest.raises(errors.NoActiveConnector, match="No active ERP connector"):
        draft.push(actor=OPERATOR, export_id=uuid.uuid4(), has_active_connector=False, now=NOW)
    assert draft.status is DraftStatus.APPROVED
    assert draft.attempts == []


def test_export_sent_for_the_current_export_makes_the_draft_pushed() -> None:
    draft = in_status(DraftStatus.PUSHING)
    export_id = draft.current_export_id
    assert export_id is not None
    assert draft.export_sent(export_id, now=NOW) is True
    assert draft.status is DraftStatus.PUSHED
    assert draft.attempts[0].status is ExportStatus.SENT


def test_export_failed_for_the_current_export_makes_the_draft_error_with_the_error() -> None:
    draft = in_status(DraftStatus.PUSHING)
    export_id = draft.current_export_id
    assert export_id is not None
    assert draft.export_failed(export_id, error={"error_code": "auth"}, now=NOW) is True
    assert draft.status is DraftStatus.ERROR
    assert draft.attempts[0].error == {"error_code": "auth"}


def test_retry_push_from_error_starts_a_new_export_with_the_next_attempt_number() -> None:
    draft = in_status(DraftStatus.ERROR)
    first = draft.current_export_id
    second = uuid.uuid4()
    attempt = draft.retry_push(actor=OPERATOR, export_id=second, has_active_connector=True, now=NOW)
    assert (attempt.attempt, draft.status, draft.current_export_id) == (
        2,
        DraftStatus.PUSHING,
        second,
    )
    assert [a.erp_export_id for a in draft.attempts] == [first, second]
    event = draft.events[-1]
    assert isinstance(event, PushRequested) and event.is_retry and event.attempt == 2


@pytest.mark.parametrize("status", sorted(ALL - {DraftStatus.ERROR}))
def test_retry_push_on_anything_but_error_is_refused(status: DraftStatus) -> None:
    draft = in_status(status)
    with pytest.raises(errors.DraftNotInError, match="Draft must be in ERROR"):
        draft.retry_push(actor=OPERATOR, export_id=uuid.uuid4(), has_active_connector=True, now=NOW)


def test_a_result_for_an_older_export_only_updates_that_attempt() -> None:
    draft = in_status(DraftStatus.ERROR)
    first = draft.current_export_id
    assert first is not None
    draft.retry_push(actor=OPERATOR, export_id=uuid.uuid4(), has_active_connector=True, now=NOW)
    assert draft.export_sent(first, now=NOW) is False
    assert draft.status is DraftStatus.PUSHING
    assert draft.attempts[0].status is ExportStatus.SENT


def test_a_result_when_status_was_set_by_hand_changes_no_status() -> None:
    draft = in_status(DraftStatus.PUSHING)
    draft.status = DraftStatus.ERROR  # as an operator does with SQL in the quickstart
    export_id = draft.current_export_id
    assert export_id is not None
    assert draft.export_sent(export_id, now=NOW) is False
    assert draft.status is DraftStatus.ERROR


def test_a_result_for_an_unknown_export_changes_nothing() -> None:
    draft = in_status(DraftStatus.PUSHING)
    assert draft.export_failed(uuid.uuid4(), error={}, now=NOW) is False
    assert draft.status is DraftStatus.PUSHING
    assert draft.attempts[0].status is ExportStatus.PENDING


class DraftLifecycle(RuleBasedStateMachine):
    """Random sequences of commands never break the state machine's invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.draft = new_draft()
        self.expected = DraftStatus.NEW

    def _attempt(self, step: object, allowed: set[DraftStatus], target: DraftStatus) -> None:
        before = self.draft.status
        try:
            step()  # type: ignore[operator]
        except errors.DomainError:
            assert before not in allowed
            assert self.draft.status is before
        else:
            assert before in allowed
            self.expected = target

    @rule(good=st.booleans())
    def validate(self, good: bool) -> None:
        if self.draft.status in {DraftStatus.NEW, DraftStatus.NEEDS_REVIEW, DraftStatus.READY}:
            self.draft.edit(now=NOW, lines=[line(quantity=Decimal(1 if good else 0))])
        target = DraftStatus.READY if good else DraftStatus.NEEDS_REVIEW
        editable = {DraftStatus.NEW, DraftStatus.NEEDS_REVIEW, DraftStatus.READY}

        def step() -> None:
            self.draft.validate(actor=OPERATOR, external_ref_taken=False, now=NOW)

        self._attempt(step, editable, target)

    @rule()
    def approve(self) -> None:
        self._attempt(
            lambda: self.draft.approve(actor=APPROVER, now=NOW),
            {DraftStatus.READY},
            DraftStatus.APPROVED,
        )

    @rule(connector=st.booleans())
    def push(self, connector: bool) -> None:
        self._attempt(
            lambda: self.draft.push(
                actor=OPERATOR, export_id=uuid.uuid4(), has_active_connector=connector, now=NOW
            ),
            {DraftStatus.APPROVED} if connector else set(),
            DraftStatus.PUSHING,
        )

    @rule()
    def retry(self) -> None:
        self._attempt(
            lambda: self.draft.retry_push(
                actor=OPERATOR, export_id=uuid.uuid4(), has_active_connector=True, now=NOW
            ),
            {DraftStatus.ERROR},
            DraftStatus.PUSHING,
        )

    @rule(sent=st.booleans(), current=st.booleans())
    def export_result(self, sent: bool, current: bool) -> None:
        export_id = self.draft.current_export_id if current else uuid.uuid4()
        if export_id is None:
            return
        pushing = self.draft.status is DraftStatus.PUSHING
        if sent:
            changed = self.draft.export_sent(export_id, now=NOW)
        else:
            changed = self.draft.export_failed(export_id, error={"e": 1}, now=NOW)
        assert changed == (pushing and current)
        if changed:
            self.expected = DraftStatus.PUSHED if sent else DraftStatus.ERROR

    @invariant()
    def status_is_the_expected_one(self) -> None:
        assert self.draft.status is self.expected

    @invariant()
    def attempts_are_numbered_one_by_one(self) -> None:
        assert [a.attempt for a in self.draft.attempts] == list(
            range(1, len(self.draft.attempts) + 1)
        )

    @invariant()
    def approval_is_recorded_once_approved(self) -> None:
        if self.draft.status in {DraftStatus.APPROVED, DraftStatus.PUSHING, DraftStatus.PUSHED}:
            assert self.draft.approved_by_user_id == "boss-1"
            assert self.draft.approved_at == NOW


TestDraftLifecycle = DraftLifecycle.TestCase
TestDraftLifecycle.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
