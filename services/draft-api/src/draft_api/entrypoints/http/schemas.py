"""Request and response bodies of the REST API (decimals travel as strings on the way out)."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from orderflow_shared.web import PatchIn
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from draft_api.domain.model import DraftOrder, DraftStatus, ExportStatus, NewLine, PushAttempt
from draft_api.service_layer.ports import ISSUES_IN_SUMMARY, DraftSummary

_MICRO = Decimal("0.000001")
#: how far (relative) a JSON number may sit from the 6-place decimal it stands for: a
#: few units in the last place of a double, what a client's float arithmetic leaves
_FLOAT_SLACK = 4 * 2.0**-52


def _exact_decimal(value: Any) -> Any:
    """A fractional JSON number arrives as a double; take the decimal of at most 6
    places that the client meant (9.5 -> 9.5, 0.1 -> 0.1, 300001 * 1e-6 -> 0.300001).
    A number that is no such decimal (1.0000001) is refused, never rounded."""
    if not isinstance(value, float) or value.is_integer() or not math.isfinite(value):
        return value
    written = Decimal(repr(value))
    if -written.as_tuple().exponent <= 6:  # type: ignore[operator]
        return written
    meant = written.quantize(_MICRO)
    if math.isclose(float(meant), value, rel_tol=_FLOAT_SLACK, abs_tol=0.0):
        return meant.normalize()
    raise PydanticCustomError(
        "decimal_places",
        'An amount has at most 6 decimal places; send it as a string, e.g. "9.50"',
    )


Amount = Annotated[
    Decimal,
    BeforeValidator(_exact_decimal),
    Field(
        ge=0,
        max_digits=18,
        decimal_places=6,
        description='A decimal: a string such as `"9.50"` or a JSON number, with at most 12 '
        "digits before the point and 6 after; returned as a string.",
        examples=["9.50"],
        json_schema_extra=lambda schema: _decimal_schema(schema),
    ),
]

#: a decimal string the server takes: at most 12 digits before the point, 6 after
DECIMAL_PATTERN = r"^[0-9]{1,12}(?:\.[0-9]{1,6})?$"


def _decimal_schema(schema: dict[str, Any]) -> None:
    """The published form of an amount: a number below 10^12 in steps of 10^-6, or a
    decimal string."""
    schema.pop("anyOf", None)
    schema["anyOf"] = [
        {"type": "number", "minimum": 0, "maximum": 999_999_999_999, "multipleOf": 0.000001},
        {"type": "string", "pattern": DECIMAL_PATTERN, "maxLength": 19},
    ]


ShortText = Annotated[str, Field(max_length=100)]


class _In(BaseModel):
    # no str_strip_whitespace: the published limits hold for the text as sent (the
    # use cases see it stripped, and validation flags what is blank)
    model_config = ConfigDict(extra="forbid")


class LineIn(_In):
    sku: str = Field(min_length=1, max_length=100, examples=["SKU-1"])
    description: str = Field(default="", max_length=1000, examples=["Widget"])
    quantity: Amount
    unit: str = Field(
        min_length=1,
        max_length=3,
        description="UN/ECE Recommendation 20 code, e.g. EA, KGM, MTR.",
        examples=["EA"],
    )
    unit_price: Amount
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217", examples=["EUR"])

    def to_domain(self) -> NewLine:
        return NewLine(
            sku=self.sku.strip(),
            description=self.description.strip(),
            quantity=self.quantity,
            unit=self.unit.strip(),
            unit_price=self.unit_price,
            currency=self.currency,
        )


class DraftIn(_In):
    customer_id: ShortText = Field(examples=["C-1001"])
    external_ref: ShortText | None = Field(default=None, examples=["PO-4711"])
    lines: list[LineIn] = Field(default_factory=list, max_length=1000)


class DraftPatch(PatchIn):
    """Only the fields sent change; `external_ref: null` clears it (`null` elsewhere is a
    422). The draft goes back to NEW."""

    model_config = ConfigDict(extra="forbid")
    nullable_fields = frozenset({"external_ref"})

    customer_id: ShortText | None = None
    external_ref: ShortText | None = None
    lines: list[LineIn] | None = Field(default=None, max_length=1000)


class IssueOut(BaseModel):
    field: str
    code: str
    message: str


class LineOut(BaseModel):
    line_no: int
    sku: str
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    currency: str
    line_total: Decimal


class ExportOut(BaseModel):
    """One push attempt (an export of the draft to the ERP)."""

    erp_export_id: uuid.UUID
    attempt: int
    status: ExportStatus = Field(
        description="PENDING (not delivered yet), SENT or FAILED: the words export-service uses"
    )
    requested_by_user_id: str
    requested_at: datetime
    finished_at: datetime | None
    error: dict[str, Any] | None


def _exports(attempts: list[PushAttempt]) -> list[ExportOut]:
    return [ExportOut.model_validate(attempt, from_attributes=True) for attempt in attempts]


class _DraftHeaderOut(BaseModel):
    """What a draft and a draft in a list both show."""

    id: uuid.UUID
    org_id: str
    customer_id: str
    external_ref: str | None
    status: DraftStatus
    currency: str | None = Field(description="The currency of the first line.")
    total: Decimal = Field(description="Sum of every line total.")
    created_by_user_id: str
    last_edited_by_user_id: str | None = Field(
        description="Who changed the draft last (null: nobody since its creation)."
    )
    approved_by_user_id: str | None
    approved_at: datetime | None
    created_at: datetime
    updated_at: datetime
    current_export_id: uuid.UUID | None
    version: int
    exports: list[ExportOut] = Field(description="Push history, oldest first.")

    @classmethod
    def _header(cls, draft: DraftOrder | DraftSummary) -> dict[str, Any]:
        fields = _DraftHeaderOut.model_fields.keys() - {"exports"}
        return {name: getattr(draft, name) for name in fields} | {
            "exports": _exports(draft.attempts)
        }


class DraftOut(_DraftHeaderOut):
    lines: list[LineOut]
    validation_issues: list[IssueOut]

    @classmethod
    def of(cls, draft: DraftOrder) -> DraftOut:
        return cls(
            **cls._header(draft),
            lines=[LineOut(**vars(line), line_total=line.total) for line in draft.lines],
            validation_issues=[IssueOut(**vars(i)) for i in draft.validation_issues],
        )


class DraftSummaryOut(_DraftHeaderOut):
    """A draft in a list: the header, counts and totals; its lines are in
    `GET /draft-orders/{id}`."""

    line_count: int
    totals: dict[str, Decimal] = Field(
        description="Sum of the line totals per currency.", examples=[{"EUR": "28.50"}]
    )
    validation_issues: list[IssueOut] = Field(
        description=f"The first {ISSUES_IN_SUMMARY} issues (`issue_count` says how many)."
    )
    issue_count: int

    @classmethod
    def of(cls, summary: DraftSummary) -> DraftSummaryOut:
        return cls(
            **cls._header(summary),
            line_count=summary.line_count,
            totals=summary.totals,
            validation_issues=[IssueOut(**vars(i)) for i in summary.validation_issues],
            issue_count=summary.issue_count,
        )


class DraftPage(BaseModel):
    items: list[DraftSummaryOut]
    total: int
    limit: int
    offset: int


class ValidationOut(BaseModel):
    id: uuid.UUID
    status: DraftStatus = Field(description="READY or NEEDS_REVIEW")
    issues: list[IssueOut]


class ApprovalOut(BaseModel):
    id: uuid.UUID
    status: DraftStatus
    approved_at: datetime


class PushOut(BaseModel):
    erp_export_id: uuid.UUID
    status: str = Field(
        description="PUSHING (the draft's status) for a new push; for a replay the "
        "export's status now (PENDING, SENT or FAILED). draft_status and export_status "
        "say each on its own",
        examples=["PUSHING"],
    )
    draft_status: DraftStatus = Field(description="The draft's status now", examples=["PUSHING"])
    export_status: ExportStatus = Field(
        description="The export's status now: PENDING (not delivered yet), SENT or FAILED",
        examples=["PENDING"],
    )


class DraftSettingsOut(BaseModel):
    """The caller's organisation's draft settings."""

    org_id: str
    four_eyes: bool = Field(
        description="When true, the user who created or last edited a draft may not "
        "approve it (403)."
    )
    updated_by_user_id: str | None
    updated_at: datetime | None


class DraftSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    four_eyes: bool
