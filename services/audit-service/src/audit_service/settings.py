"""Settings of the audit service (environment variables, see docs/DEVELOPING.md)."""

from __future__ import annotations

from pathlib import Path

from orderflow_shared.settings import ServiceSettings
from pydantic import Field, SecretStr
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
    #: How long the broker may hold a fetch to gather records (0: answer on the first
    #: record). The audit is on no request's path, so under a live load it takes one
    #: batch (one transaction) per this interval instead of one per event or two (ingest
    #: CPU per push 6.9 -> 1.2 ms at 15 pushes/s); a backlog still comes back at once,
    #: and entries land up to this much later.
    audit_fetch_wait_ms: int = Field(default=500, ge=0, le=5_000)

    # --- retention and signed checkpoints (docs/audit-retention.md) -----------------
    #: how long an org's entries are kept when it has no policy of its own
    audit_retention_days: int = Field(default=365, ge=1, le=36500)
    #: where archives go (a file per org and month); retention refuses to run without it
    audit_archive_dir: Path | None = None
    audit_retention_interval_seconds: float = Field(default=3600.0, gt=0)
    #: at most this many entries per archive file (and per transaction)
    audit_retention_batch_size: int = Field(default=10_000, ge=1, le=1_000_000)
    #: Ed25519 private key, base64 of the 32 raw bytes (or PKCS#8 PEM); no key: no
    #: checkpoints are signed, and a log with checkpoints cannot be verified
    audit_signing_key: SecretStr | None = None
    #: further public keys (base64 of 32 raw bytes, comma-separated) that still verify
    audit_trusted_keys: str = ""
    audit_checkpoint_interval_seconds: float = Field(default=60.0, gt=0)
    #: test hook (ORDERFLOW_ENV=test only): retention stops for good at this point
    #: (`after_archive`, `before_commit`), so a test can kill it there
    audit_retention_pause_at: str = ""

    @property
    def dead_letter_group(self) -> str:
        """The dead-letter topic is read raw by its own consumer, in its own group."""
        return f"{self.audit_consumer_group}.dead-letter"

    @property
    def runtime_role(self) -> str:
        """The role the service runs as (the migrations grant it SELECT, INSERT)."""
        return make_url(self.database_url).username or "audit_service"
