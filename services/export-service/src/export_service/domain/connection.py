"""ERP connections: where an org's exports go, with secrets kept apart from config."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from export_service.domain.errors import InvalidConnection
from export_service.domain.events import Change, ConnectionChanged
from export_service.domain.filenames import validate_template
from export_service.domain.renderers import FileFormat

_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}=?$")


class ConnectorType(StrEnum):
    SFTP = "sftp_dropzone"
    LOCAL = "local_dropzone"


@dataclass(frozen=True)
class SftpSettings:
    host: str
    port: int
    username: str
    remote_directory: str
    host_key_fingerprint: str

    def __post_init__(self) -> None:
        if not self.host.strip() or any(c.isspace() or not c.isprintable() for c in self.host):
            raise InvalidConnection("sftp.host must be a host name or address")
        if not 1 <= self.port <= 65535:
            raise InvalidConnection("sftp.port must be between 1 and 65535")
        if not self.username or not self.username.isprintable():
            raise InvalidConnection("sftp.username is required")
        if not self.remote_directory or "\x00" in self.remote_directory:
            raise InvalidConnection("sftp.remote_directory is required")
        if not _FINGERPRINT.match(self.host_key_fingerprint):
            raise InvalidConnection(
                "sftp.host_key_fingerprint must be the server key's SHA256 fingerprint "
                "as printed by `ssh-keygen -lf` (SHA256:...)"
            )


@dataclass(frozen=True)
class LocalSettings:
    directory: str

    def __post_init__(self) -> None:
        if not self.directory.startswith("/") or "\x00" in self.directory:
            raise InvalidConnection("local.directory must be an absolute path")


@dataclass(frozen=True)
class Secrets:
    private_key: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never print a secret by accident
        return (
            f"Secrets(private_key={'***' if self.private_key else None}, "
            f"password={'***' if self.password else None})"
        )

    @property
    def is_empty(self) -> bool:
        return not self.private_key and not self.password


def _changed_sftp(current: SftpSettings | None, changes: Mapping[str, Any]) -> SftpSettings:
    try:
        if current is None:
            return SftpSettings(**changes)
        return replace(current, **changes)
    except TypeError:
        raise InvalidConnection(
            "sftp needs host, port, username, remote_directory and host_key_fingerprint"
        ) from None


#: the longest retry budget a connection may ask for (30 days)
MAX_DELIVERY_DEADLINE_SECONDS = 2_592_000


@dataclass
class ErpConnection:
    id: uuid.UUID
    org_id: str
    name: str
    connector_type: ConnectorType
    is_active: bool
    file_format: FileFormat
    file_name_template: str
    sftp: SftpSettings | None
    local: LocalSettings | None
    secrets: Secrets
    created_at: datetime
    updated_at: datetime
    #: neutralise CSV cells a spreadsheet would run as formulas (off for ERPs needing raw values)
    csv_formula_guard: bool = True
    #: how long a transient failure is retried, per export (None: the service's default)
    delivery_deadline_seconds: int | None = None
    events: list[ConnectionChanged] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def create(
        cls,
        *,
        org_id: str,
        name: str,
        connector_type: ConnectorType,
        file_format: FileFormat,
        file_name_template: str,
        sftp: SftpSettings | None,
        local: LocalSettings | None,
        secrets: Secrets,
        now: datetime,
        actor_id: str | None,
        connection_id: uuid.UUID | None = None,
        csv_formula_guard: bool = True,
        delivery_deadline_seconds: int | None = None,
    ) -> ErpConnection:
        connection = cls(
            id=connection_id or uuid.uuid4(),
            org_id=org_id,
            name=name,
            connector_type=connector_type,
            is_active=False,
            file_format=file_format,
            file_name_template=file_name_template,
            sftp=sftp,
            local=local,
            secrets=secrets,
            created_at=now,
            updated_at=now,
            csv_formula_guard=csv_formula_guard,
            delivery_deadline_seconds=delivery_deadline_seconds,
        )
        connection._check()
        connection._record("created", actor_id)
        return connection

    def _check(self) -> None:
        if not self.name.strip() or len(self.name) > 200:
            raise InvalidConnection("name must be 1-200 characters")
        validate_template(self.file_name_template)
        deadline = self.delivery_deadline_seconds
        if deadline is not None and not 1 <= deadline <= MAX_DELIVERY_DEADLINE_SECONDS:
            raise InvalidConnection(
                f"delivery_deadline_seconds must be 1-{MAX_DELIVERY_DEADLINE_SECONDS} (30 days)"
            )
        if self.connector_type is ConnectorType.SFTP:
            if self.sftp is None:
                raise InvalidConnection("an sftp_dropzone connection needs the `sftp` settings")
            if self.secrets.is_empty:
                raise InvalidConnection(
                    "an sftp_dropzone connection needs a private_key or a password"
                )
            self.local = None
        else:
            if self.local is None:
                raise InvalidConnection("a local_dropzone connection needs the `local` settings")
            self.sftp = None
            self.secrets = Secrets()

    def update(
        self,
        *,
        now: datetime,
        actor_id: str | None,
        name: str | None = None,
        file_format: FileFormat | None = None,
        file_name_template: str | None = None,
        sftp_changes: Mapping[str, Any] | None = None,
        local: LocalSettings | None = None,
        secrets: Secrets | None = None,
        csv_formula_guard: bool | None = None,
        delivery_deadline_seconds: int | None = None,
    ) -> None:
        """Change what is given; secrets left out keep their stored value."""
        if csv_formula_guard is not None:
            self.csv_formula_guard = csv_formula_guard
        if delivery_deadline_seconds is not None:
            self.delivery_deadline_seconds = delivery_deadline_seconds
        if name is not None:
            self.name = name
        if file_format is not None:
            self.file_format = file_format
        if file_name_template is not None:
            self.file_name_template = file_name_template
        if sftp_changes:
            self.sftp = _changed_sftp(self.sftp, sftp_changes)
        if local is not None:
            self.local = local
        if secrets is not None:
            self.secrets = replace(
                self.secrets,
                private_key=secrets.private_key or self.secrets.private_key,
                password=secrets.password or self.secrets.password,
            )
        self._check()
        self.updated_at = now
        self._record("updated", actor_id)

    def activate(self, now: datetime, actor_id: str | None) -> None:
        if self.is_active:
            return
        self.is_active = True
        self.updated_at = now
        self._record("activated", actor_id)

    def deactivate(self, now: datetime, actor_id: str | None) -> None:
        if not self.is_active:
            return
        self.is_active = False
        self.updated_at = now
        self._record("deactivated", actor_id)

    def restate(self, actor_id: str | None) -> None:
        """Publish the current state again (nothing changes; `changed_at` stays)."""
        self._record("restated", actor_id)

    def _record(self, change: Change, actor_id: str | None) -> None:
        self.events.append(
            ConnectionChanged(
                connection_id=self.id,
                org_id=self.org_id,
                actor_id=actor_id,
                change=change,
                name=self.name,
                connector_type=self.connector_type.value,
                is_active=self.is_active,
                changed_at=self.updated_at,
            )
        )
