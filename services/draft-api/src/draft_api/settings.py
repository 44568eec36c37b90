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
    #: Consumers and the outbox relay run in the serve process unless turned off (tests).
    run_background_tasks: bool = True

    @property
    def idempotency_ttl(self) -> timedelta:
        return timedelta(hours=self.idempotency_ttl_hours)
