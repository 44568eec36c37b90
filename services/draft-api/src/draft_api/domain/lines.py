"""The lines of a draft order: as a user enters them, and as the draft holds them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class NewLine:
    """A line as a user enters it (numbered by the aggregate)."""

    sku: str
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    currency: str


@dataclass(frozen=True)
class DraftLine(NewLine):
    """A line of a draft: what the user entered, and its number."""

    line_no: int

    @property
    def total(self) -> Decimal:
        return self.quantity * self.unit_price
