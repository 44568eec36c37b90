"""Validation rules an order desk expects before a draft may be approved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

#: UN/ECE Recommendation 20 unit codes accepted on order lines (the common subset).
KNOWN_UNITS: frozenset[str] = frozenset(
    {
        "EA", "C62", "H87", "PR", "SET", "DZN", "PK", "BX", "CT", "CS", "RO", "PF", "BG",
        "KGM", "GRM", "MGM", "TNE", "LBR", "ONZ",
        "MTR", "CMT", "MMT", "KMT", "INH", "FOT", "YRD",
        "MTK", "CMK", "FTK", "MTQ", "LTR", "MLT", "CLT", "GLL",
        "HUR", "MIN", "SEC", "DAY", "WEE", "MON", "ANN",
        "KWH", "MWH", "KWT",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Issue:
    field: str
    code: str
    message: str


class LineLike(Protocol):
    @property
    def quantity(self) -> Decimal: ...
    @property
    def unit(self) -> str: ...
    @property
    def unit_price(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...


def find_issues(
    customer_id: str,
    lines: Sequence[LineLike],
    *,
    external_ref_taken: bool,
    external_ref: str | None,
) -> list[Issue]:
    """Every rule a draft breaks (empty when it may become READY)."""
    issues: list[Issue] = []
    if not customer_id.strip():
        issues.append(Issue("customer_id", "customer_missing", "A customer is required"))
    if external_ref and external_ref_taken:
        issues.append(
            Issue(
                "external_ref",
                "external_ref_duplicate",
                f"External reference {external_ref!r} is already used by another draft",
            )
        )
    if not lines:
        issues.append(Issue("lines", "no_lines", "An order needs at least one line"))
    for i, line in enumerate(lines):
        issues.extend(_line_issues(i, line))
    currencies = {line.currency for line in lines}
    if len(currencies) > 1:
        issues.append(
            Issue(
                "lines",
                "mixed_currencies",
                "All lines must use one currency, found " + ", ".join(sorted(currencies)),
            )
        )
    return issues


def _line_issues(index: int, line: LineLike) -> list[Issue]:
    found: list[Issue] = []
    if line.quantity <= 0:
        found.append(
            Issue(f"lines[{index}].quantity", "quantity_not_positive", "Quantity must be > 0")
        )
    if line.unit_price < 0:
        found.append(
            Issue(f"lines[{index}].unit_price", "price_negative", "Unit price must be >= 0")
        )
    if line.unit not in KNOWN_UNITS:
        found.append(
            Issue(
                f"lines[{index}].unit",
                "unit_unknown",
                f"Unit {line.unit!r} is not a known UN/ECE Rec 20 code",
            )
        )
    return found
