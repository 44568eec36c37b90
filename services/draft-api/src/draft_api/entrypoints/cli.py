"""`python -m draft_api serve | relay | consume | migrate | downgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from orderflow_shared.service_cli import (
    ServiceCli,
    alembic_config,
    downgrade_schema,
    upgrade_schema,
)
from orderflow_shared.settings import ServiceSettings

from draft_api.settings import DraftApiSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _alembic(settings: DraftApiSettings) -> Config:
    return alembic_config(MIGRATIONS, settings.migrations_url)


def migrate(settings: DraftApiSettings, revision: str = "head") -> None:
    upgrade_schema(_alembic(settings), revision)


def downgrade(settings: DraftApiSettings, revision: str) -> None:
    downgrade_schema(_alembic(settings), revision)


def _settings() -> ServiceSettings:
    return DraftApiSettings()


def cli() -> ServiceCli:
    from draft_api import bootstrap

    return ServiceCli(
        prog="python -m draft_api",
        settings=_settings,
        configure=bootstrap.configure,
        http_app=bootstrap.make_app,
        role_app=bootstrap.make_role_app,
        roles={
            "relay": "publish the outbox to Kafka",
            "consume": "apply export results and connector changes; purge what expired",
        },
        alembic=_alembic,
    )


def main() -> int:
    return cli().main()
