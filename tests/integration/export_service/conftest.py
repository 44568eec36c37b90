"""Fixtures of export-service's integration tier: a real OpenSSH SFTP dropzone.

The dropzone is the devstack's own `Sftp` component (chrooted, key auth only),
started on ORDERFLOW_PORT_OFFSET (default 40000 here) with a state dir of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from export_service.domain.connection import ConnectorType, ErpConnection, Secrets, SftpSettings
from export_service.domain.renderers import FileFormat
from orderflow_devstack.components import Sftp
from orderflow_devstack.config import StackConfig


@dataclass
class Dropzone:
    component: Sftp
    host: str
    port: int
    username: str
    remote_directory: str
    fingerprint: str
    private_key: str
    inbox: Path

    def connection(self, **changes: object) -> ErpConnection:
        settings = {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "remote_directory": self.remote_directory,
            "host_key_fingerprint": self.fingerprint,
        }
        secrets = Secrets(private_key=str(changes.pop("private_key", self.private_key)))
        settings.update(changes)
        now = datetime.now(UTC)
        return ErpConnection(
            id=uuid.uuid4(),
            org_id="org-it",
            name="it",
            connector_type=ConnectorType.SFTP,
            is_active=True,
            file_format=FileFormat.CSV,
            file_name_template="{external_ref}_{export_id}",
            sftp=SftpSettings(**settings),  # type: ignore[arg-type]
            local=None,
            secrets=secrets,
            created_at=now,
            updated_at=now,
        )

    def files(self) -> list[str]:
        return sorted(p.name for p in self.inbox.iterdir())

    def clear(self) -> None:
        for path in self.inbox.iterdir():
            path.unlink()


@pytest.fixture(scope="session")
def dropzone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dropzone]:
    offset = int(os.environ.get("ORDERFLOW_PORT_OFFSET", "40000"))
    cfg = StackConfig.from_env(
        state_dir=tmp_path_factory.mktemp("export-sftp"),
        port_offset=offset,
        environment="test",
    )
    sftp = Sftp(cfg)
    sftp.start(wait=True)
    try:
        info = sftp.describe()
        yield Dropzone(
            component=sftp,
            host="127.0.0.1",
            port=int(info["port"]),
            username=str(info["username"]),
            remote_directory=str(info["remote_directory"]),
            fingerprint=str(info["host_key_fingerprint"]),
            private_key=Path(str(info["private_key_path"])).read_text(),
            inbox=Path(str(info["chroot_dir"])) / "inbox",
        )
    finally:
        sftp.stop()


@pytest.fixture
def clean_dropzone(dropzone: Dropzone) -> Dropzone:
    dropzone.clear()
    return dropzone
