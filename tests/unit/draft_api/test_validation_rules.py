"""The order desk's validation rules and the Idempotency-Key format."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from draft_api.domain import errors
from draft_api.domain.idempotency import Operation, fingerprint, parse_key
from draft_api.domain.model import NewLine
from draft_api.domain.validation import find_issues


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


def codes(
    customer: str = "C-1", lines: list[NewLine] | None = None, taken: bool = False
) -> list[str]:
    found = find_issues(
        customer,
        [line()] if lines is None else lines,
        external_ref="PO-1",
        external_ref_taken=taken,
    )
    return [issue.code for issue in found]


def test_a_complete_order_has_no_issues() -> None:
    assert codes() == []


def test_a_free_line_is_fine() -> None:
    assert codes(lines=[line(unit_price=Decimal(0))]) == []


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"customer": "  "}, "customer_missing"),
        ({"lines": []}, "no_lines"),
        ({"lines": [line(quantity=Decimal(0))]}, "quantity_not_positive"),
        ({"lines": [line(quantity=Decimal("-1"))]}, "quantity_not_positive"),
        ({"lines": [line(unit_price=Decimal("-0.01"))]}, "price_negative"),
        ({"lines": [line(unit="XYZ")]}, "unit_unknown"),
        ({"lines": [line(), line(currency="USD")]}, "mixed_currencies"),
        ({"taken": True}, "external_ref_duplicate"),
    ],
)
def test_each_rule_reports_its_issue(kwargs: dict[str, object], code: str) -> None:
    assert codes(**kwargs) == [code]  # type: ignore[arg-type]


def test_issues_name_the_offending_line_field() -> None:
    found = find_issues(
        "C-1",
        [line(), line(unit="??")],
        external_ref=None,
        external_ref_taken=False,
    )
    assert [(i.field, i.code) for i in found] == [("lines[1].unit", "unit_unknown")]


def test_units_are_un_ece_rec20_codes() -> None:
    for unit in ("EA", "KGM", "MTR", "LTR", "H87"):
        assert codes(lines=[line(unit=unit)]) == []


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ('"8e03978e-40d5"', "8e03978e-40d5"),
        ("a", "a"),
        ("abc_DEF.1:2~3+4/5=", "abc_DEF.1:2~3+4/5="),
    ],
)
def test_well_formed_keys_are_accepted(raw: str, key: str) -> None:
    assert parse_key(raw) == key


@pytest.mark.parametrize("raw", ["", '""', "has space", "x" * 256, "ümlaut", "a;b", "a\nb"])
def test_malformed_keys_are_refused(raw: str) -> None:
    with pytest.raises(errors.IdempotencyKeyInvalid):
        parse_key(raw)


def test_fingerprint_tells_operations_and_drafts_apart() -> None:
    draft = uuid.uuid4()
    assert fingerprint(Operation.PUSH, draft) == fingerprint(Operation.PUSH, draft)
    assert fingerprint(Operation.PUSH, draft) != fingerprint(Operation.RETRY_PUSH, draft)
    assert fingerprint(Operation.PUSH, draft) != fingerprint(Operation.PUSH, uuid.uuid4())
