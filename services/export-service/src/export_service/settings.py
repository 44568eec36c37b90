"""Settings of export-service (environment variables, see docs/DEVELOPING.md)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from orderflow_shared.settings import ServiceSettings
from pydantic import Field, SecretStr, model_validator


class ExportSettings(ServiceSettings):
    service_name: str = "export-service"
    http_port: int = 8102

    #: Fernet key of the ERP secrets at rest; no default: `make up` makes one per stack
    export_encryption_key: SecretStr
    export_storage_dir: Path = Path(".run/storage")
    #: transient delivery errors are retried until this long after the push was recorded
    export_delivery_deadline_seconds: float = Field(default=86_400.0, gt=0)
    #: exponential backoff with jitter between attempts, capped (also caps the probe interval)
    export_backoff_base_seconds: float = Field(default=1.0, gt=0)
    export_backoff_max_seconds: float = Field(default=300.0, gt=0)
    #: consecutive transient failures of a connection that open its circuit
    export_circuit_failure_threshold: int = Field(default=5, ge=1)
    #: first wait of an open circuit before a probe (doubles per failed probe, capped)
    export_circuit_probe_interval_seconds: float = Field(default=30.0, gt=0)
    #: deliveries in flight per connection, over all delivery processes
    export_connection_max_in_flight: int = Field(default=32, ge=1)
    #: deliveries in flight per `worker` process
    export_worker_concurrency: int = Field(default=32, ge=1)
    export_lease_seconds: float = Field(default=30.0, gt=0)
    export_poll_interval_seconds: float = Field(default=0.25, gt=0)
    #: longest sleep of an idle worker between claims (new work wakes it by NOTIFY,
    #: retries and leases by their due time): the bound on a lost wake-up
    export_idle_poll_interval_seconds: float = Field(default=2.0, gt=0)
    #: local_dropzone directories must lie inside `<root>/<org_id>/` of one of these
    #: (comma-separated); empty: the local_dropzone connector is disabled
    export_local_dropzone_roots: str = ""
    #: SFTP targets on loopback / link-local addresses are refused outside development
    #: unless this is set (the devstack and test stacks run their sshd on 127.0.0.1)
    export_sftp_allow_private_targets: bool = False
    sftp_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    sftp_sessions_per_target: int = Field(default=2, ge=1)
    sftp_uploads_per_session: int = Field(default=16, ge=1)
    #: inbox rows (push requests already recorded) older than this are purged, every
    #: `inbox_purge_interval_seconds`; must outlast the Kafka topics' retention
    inbox_retention_days: int = Field(default=14, ge=1)
    inbox_purge_interval_seconds: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> ExportSettings:
        if self.export_backoff_max_seconds < self.export_backoff_base_seconds:
            raise ValueError("EXPORT_BACKOFF_MAX_SECONDS must be >= EXPORT_BACKOFF_BASE_SECONDS")
        for text in self.export_encryption_key.get_secret_value().split(","):
            try:
                key = base64.urlsafe_b64decode(text.strip())
            except (ValueError, binascii.Error):
                key = b""
            if len(key) != 32:
                raise ValueError(
                    "EXPORT_ENCRYPTION_KEY must be Fernet keys (32 bytes, URL-safe base64),"
                    " comma-separated"
                )
        return self

    @property
    def sftp_private_targets_allowed(self) -> bool:
        return self.export_sftp_allow_private_targets or self.orderflow_env == "development"

    @property
    def local_dropzone_roots(self) -> list[Path]:
        return [Path(p.strip()) for p in self.export_local_dropzone_roots.split(",") if p.strip()]
