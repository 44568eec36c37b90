"""draft-api settings (environment variables, see docs/DEVELOPING.md)."""

from __future__ import annotations

from datetime import timedelta

from orderflow_shared.settings import ServiceSettings
from pydantic import Field


class DraftApiSettings(ServiceSettings):
    service_name: str = "draft-api"
    http_port: int = 8101
    redis_url: str = "redis://127.0.0.1:6379/0"
    idempotency_ttl_hours: int = Field(default=24, ge=1)
    #: A request waits at most this long for a pooled connection / a row lock (then 503).
    db_pool_timeout_seconds: float = Field(default=10, gt=0)
    db_lock_timeout_ms: int = Field(default=10_000, ge=0)
    consumer_group_id: str = "draft-api"
    #: Expired idempotency keys and old inbox rows are purged this often (`consume`).
    housekeeping_interval_seconds: float = Field(default=3600, gt=0)
    #: Longer than the Kafka retention of the consumed topics (7 days by default).
    inbox_retention_days: int = Field(default=14, ge=1)

    @property
    def idempotency_ttl(self) -> timedelta:
        return timedelta(hours=self.idempotency_ttl_hours)
