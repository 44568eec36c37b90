"""The words for an export's state, the same in every service, HTTP answer and event.

- PENDING: recorded, not delivered yet (not tried, or waiting to be tried again).
- DELIVERING: an attempt is running now (only export-service sees this one).
- SENT: delivered (event `export.sent`); final.
- FAILED: will not be delivered (event `export.failed`); final.

draft-api keeps PENDING until export-service says SENT or FAILED.
"""

from __future__ import annotations

from enum import StrEnum


class ExportStatus(StrEnum):
    PENDING = "PENDING"
    DELIVERING = "DELIVERING"
    SENT = "SENT"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in (ExportStatus.SENT, ExportStatus.FAILED)
