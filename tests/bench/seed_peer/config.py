"""What the peer's two processes are told by the benchmark, through SEEDPEER_* variables."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

SCHEMA = "seedpeer"
#: the Redis database of the peer (idempotency keys and Celery's queue); the stack uses 0
REDIS_DB = 15
QUEUE = "seedpeer"
TASK = "seedpeer.process_export_job"
#: the files it uploads start with this (the external_ref of its drafts)
FILE_PREFIX = "SEEDPEER-"


@dataclass(frozen=True)
class PeerConfig:
    database_url: str  # postgresql+psycopg://...
    redis_url: str  # redis://host:port/15
    jwt_secret: str
    sftp_host: str
    sftp_port: int
    sftp_username: str
    sftp_private_key_path: str
    sftp_known_hosts_line: str
    sftp_directory: str

    def env(self) -> dict[str, str]:
        return {f"SEEDPEER_{key.upper()}": str(value) for key, value in asdict(self).items()}

    @classmethod
    def from_env(cls) -> PeerConfig:
        def get(name: str) -> str:
            return os.environ[f"SEEDPEER_{name.upper()}"]

        return cls(
            database_url=get("database_url"),
            redis_url=get("redis_url"),
            jwt_secret=get("jwt_secret"),
            sftp_host=get("sftp_host"),
            sftp_port=int(get("sftp_port")),
            sftp_username=get("sftp_username"),
            sftp_private_key_path=get("sftp_private_key_path"),
            sftp_known_hosts_line=get("sftp_known_hosts_line"),
            sftp_directory=get("sftp_directory"),
        )
