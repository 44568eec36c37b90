"""Approved drafts made in bulk with SQL, so that setting up a run costs seconds.

The rows are what draft-api itself writes for an approved draft (status APPROVED,
one line); the push under test then goes through the real API.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tests.bench.common import Bench


def make_approved_drafts(bench: Bench, count: int, *, org: str) -> list[str]:
    ids = [uuid.uuid4() for _ in range(count)]
    now = datetime.now(UTC)
    with bench.connect() as conn, conn.transaction():
        with conn.cursor().copy(
            "COPY draft.draft_order (id, org_id, customer_id, external_ref, status, currency,"
            " created_by_user_id, approved_by_user_id, approved_at, created_at, updated_at)"
            " FROM STDIN"
        ) as copy:
            for draft_id in ids:
                copy.write_row(
                    (
                        draft_id,
                        org,
                        "C-BENCH",
                        f"BENCH-{draft_id.hex[:12]}",
                        "APPROVED",
                        "EUR",
                        "bench",
                        "bench",
                        now,
                        now,
                        now,
                    )
                )
        with conn.cursor().copy(
            "COPY draft.draft_order_line (draft_id, line_no, sku, description, quantity,"
            " unit, unit_price, currency) FROM STDIN"
        ) as copy:
            for draft_id in ids:
                copy.write_row((draft_id, 1, "SKU-1", "Widget", 3, "EA", "9.50", "EUR"))
    return [str(i) for i in ids]
