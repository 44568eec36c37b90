"""Settings shared by every service (pydantic-settings, read from the environment)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: the shortest HS256 key accepted (RFC 7518 3.2: at least the hash's 256 bits)
MIN_JWT_SECRET_BYTES = 32


class ServiceSettings(BaseSettings):
    """Base settings; each service subclasses it and adds its own fields.

    Build it in the app factory or CLI, never at import time.
    """

    model_config = SettingsConfigDict(extra="ignore", env_file=None, case_sensitive=False)

    orderflow_env: Literal["development", "test", "production"] = "development"
    service_name: str = "orderflow"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/orderflow"
    migration_database_url: str | None = None
    db_pool_size: int = Field(default=20, ge=1)
    #: uvicorn access log of every request (the gateway logs every request already)
    access_log: bool = False
    #: connections + requests in flight per process before uvicorn answers 503
    http_limit_concurrency: int = Field(default=1000, ge=1)
    #: idle keep-alive connections are closed after this; longer than the gateway's
    #: upstream keepalive_timeout (60 s) so the gateway never reuses a closing one
    http_keepalive_timeout_seconds: int = Field(default=75, ge=1)
    #: the most header bytes uvicorn buffers when it parses with h11 (the gateway allows
    #: 64 KB); with httptools (uvicorn's choice when installed) headers and their
    #: deadline are bounded only by the gateway, the one way in besides loopback
    http_max_header_bytes: int = Field(default=65536, ge=1024)
    #: on SIGTERM uvicorn waits this long for open responses (a console page's event
    #: stream never ends by itself), then cancels them and stops
    http_graceful_shutdown_seconds: int = Field(default=10, ge=1)
    #: origins (comma-separated, e.g. `https://desk.example.com`) whose browser pages may
    #: call the API (CORS); empty: CORS off, no Access-Control-* headers
    cors_allowed_origins: str = ""
    #: PATCH and state changes must carry If-Match (or If-Unmodified-Since), else 428
    require_preconditions: bool = False

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_partitions: int = Field(default=6, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    #: how clients reach the brokers: SASL_PLAINTEXT on a trusted network (the local
    #: stack's loopback), SASL_SSL where the deployment provides TLS
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    #: this service's own Kafka principal (the broker's ACLs name it)
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    #: CA bundle that signs the brokers' certificates (SASL_SSL); the system's if unset
    kafka_ssl_cafile: str | None = None

    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    #: the HS256 signing key; no default: `make up` generates one per stack
    jwt_secret: SecretStr | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str = "orderflow"
    jwt_audience: str = "orderflow"
    #: the longest lifetime (`exp - iat`) a token may claim
    jwt_max_lifetime_seconds: int = Field(default=24 * 3600, ge=60)
    #: longer bearer tokens are refused before any decoding
    jwt_max_token_bytes: int = Field(default=8192, ge=512)

    outbox_batch_size: int = Field(default=500, ge=1)
    outbox_poll_interval_seconds: float = Field(default=0.5, gt=0)

    @property
    def migrations_url(self) -> str:
        return self.migration_database_url or self.database_url

    @model_validator(mode="after")
    def _signing_key_for_the_algorithm(self) -> ServiceSettings:
        """A key that is given must be long enough; that one is given at all is checked
        where tokens are verified (JwtVerifier): commands such as `migrate` need none."""
        secret = self.jwt_secret
        if secret is not None and len(secret.get_secret_value().encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(f"JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes")
        return self

    @model_validator(mode="after")
    def _kafka_credentials_with_sasl(self) -> ServiceSettings:
        if self.kafka_security_protocol != "PLAINTEXT" and not (
            self.kafka_username and self.kafka_password
        ):
            protocol = self.kafka_security_protocol
            raise ValueError(f"KAFKA_USERNAME and KAFKA_PASSWORD are required with {protocol}")
        return self
