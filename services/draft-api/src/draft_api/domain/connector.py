"""Read model of an organisation's ERP connectors (fed by erp_connection.changed)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ErpConnector:
    connection_id: uuid.UUID
    org_id: str
    name: str
    connector_type: str
    is_active: bool
    changed_at: datetime
