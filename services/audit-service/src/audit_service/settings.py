"""Settings of the audit service (environment variables, see docs/DEVELOPING.md)."""

from __future__ import annotations

from orderflow_shared.settings import ServiceSettings
from pydantic import Field
from sqlalchemy.engine import make_url

#: Every contract topic and any new one of the same families.
DEFAULT_TOPIC_PATTERN = r"^(draft|export|erp_connection)\..+$"


class AuditSettings(ServiceSettings):
    service_name: str = "audit-service"
    http_port: int = 8103

    audit_consumer_group: str = "audit-service"
    audit_topic_pattern: str = DEFAULT_TOPIC_PATTERN
    audit_batch_size: int = Field(default=500, ge=1, le=5000)
    audit_lag_interval_seconds: float = Field(default=5.0, gt=0)
    #: How soon a topic created later that matches the pattern is picked up.
    audit_topic_refresh_ms: int = Field(default=30_000, ge=1_000)

    @property
    def dead_letter_group(self) -> str:
        """The dead-letter topic is read raw by its own consumer, in its own group."""
        return f"{self.audit_consumer_group}.dead-letter"

    @property
    def runtime_role(self) -> str:
        """The role the service runs as (the migrations grant it SELECT, INSERT)."""
        return make_url(self.database_url).username or "audit_service"
