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

    #: the operator console (/ui) calls the services' public APIs at these URLs
    console_draft_api_url: str = "http://127.0.0.1:8101"
    console_export_service_url: str = "http://127.0.0.1:8102"
    console_audit_service_url: str = "http://127.0.0.1:8103"
    #: its dev sign-in page (tokens for a chosen user, org and roles); None: on unless
    #: ORDERFLOW_ENV is production, and never without an HS256 JWT_SECRET
    console_dev_sign_in: bool | None = None
    #: its live feed (a Kafka consumer in the HTTP process, for server-sent events)
    console_feed: bool = True
    #: a host-key fingerprint may be fetched from loopback / private addresses
    console_allow_private_ssh_targets: bool = False
    console_api_timeout_seconds: float = Field(default=20, gt=0)
    #: lifetime of a dev sign-in's token
    console_session_hours: int = Field(default=12, ge=1, le=24)

    @property
    def idempotency_ttl(self) -> timedelta:
        return timedelta(hours=self.idempotency_ttl_hours)
