"""Per-organisation settings of draft-api (the four-eyes rule)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class OrgSettings:
    org_id: str
    #: the user who created or last edited a draft may not approve it
    four_eyes: bool = False
    updated_by_user_id: str | None = None
    updated_at: datetime | None = None
