"""The repository maps rows and records by name (`records.build`, `_row_of`): a column
and a field of the same name are one value. So a column or a field renamed on one side
only would silently fall back to a default, or not be written at all. This test holds
each table to its domain record: the names that differ are exactly the ones the
repository maps by hand."""

from __future__ import annotations

import dataclasses

import pytest
from draft_api.adapters.orm import build_tables
from draft_api.domain.connector import ErpConnector
from draft_api.domain.idempotency import IdempotencyRecord
from draft_api.domain.model import DraftLine, DraftOrder, PushAttempt
from draft_api.domain.org_settings import OrgSettings

TABLES = build_tables()

#: table -> (its record, columns mapped by hand, fields mapped by hand)
MAPPED = {
    "draft_order": (DraftOrder, {"currency"}, {"attempts", "events", "lines"}),
    "draft_order_line": (DraftLine, {"draft_id"}, set()),
    "push_attempt": (PushAttempt, {"draft_id", "org_id", "error_json"}, {"error"}),
    "erp_connector": (ErpConnector, set(), set()),
    "org_settings": (OrgSettings, set(), set()),
    "idempotency_key": (IdempotencyRecord, {"request_fingerprint"}, {"fingerprint"}),
}


@pytest.mark.parametrize("table_name", sorted(MAPPED))
def test_a_tables_columns_and_its_records_fields_differ_only_where_mapped_by_hand(
    table_name: str,
) -> None:
    record, own_columns, own_fields = MAPPED[table_name]
    columns = {c.name for c in getattr(TABLES, table_name).c}
    fields = {f.name for f in dataclasses.fields(record)}
    assert columns - fields == own_columns, f"{table_name}: columns without a field"
    assert fields - columns == own_fields, f"{record.__name__}: fields without a column"


def test_every_domain_table_is_held() -> None:
    tables = {t.name for t in TABLES.metadata.sorted_tables}
    assert tables - set(MAPPED) == {"outbox", "inbox"}  # shared machinery, its own tests
