"""Check constraints built from the domain's enums, so a table allows exactly the
values its domain has (the migrations stay explicit; tests compare the two)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import CheckConstraint


def enum_check(column: str, values: Iterable[str], *, name: str) -> CheckConstraint:
    """`CHECK (<column> IN (...))` of `values` (an enum class, or any strings); the
    values are kept in the constraint's `info["values"]` for the drift tests."""
    allowed = tuple(str(v) for v in values)
    if not allowed or any("'" in v for v in allowed):
        raise ValueError(f"{name}: need values without quotes")
    listed = ", ".join(f"'{v}'" for v in allowed)
    return CheckConstraint(f"{column} IN ({listed})", name=name, info={"values": allowed})
