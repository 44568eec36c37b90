"""`python -m export_service serve | relay | consume | worker | migrate | downgrade |
restate-connections`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from alembic.config import Config
from orderflow_shared.service_cli import (
    Command,
    ServiceCli,
    alembic_config,
    downgrade_schema,
    upgrade_schema,
)
from orderflow_shared.settings import ServiceSettings

from export_service.settings import ExportSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _alembic(settings: ExportSettings) -> Config:
    return alembic_config(MIGRATIONS, settings.migrations_url)


def migrate(settings: ExportSettings, revision: str = "head") -> None:
    upgrade_schema(_alembic(settings), revision)


def downgrade(settings: ExportSettings, revision: str) -> None:
    downgrade_schema(_alembic(settings), revision)


def restate_connections(settings: ExportSettings) -> int:
    """Queue every connection's current state on `erp_connection.changed` (keyed by its
    id) in the outbox; a running `relay` publishes it. How many."""
    from export_service.bootstrap import build, close
    from export_service.service_layer.connections import restate_connections as restate

    async def run() -> int:
        container = build(settings)
        try:
            return await restate(container.uow_factory())
        finally:
            await close(container)

    return asyncio.run(run())


def _restate(settings: ExportSettings, args: argparse.Namespace) -> int:
    print(f"{restate_connections(settings)} connection(s) restated")
    return 0


def _settings() -> ServiceSettings:
    return ExportSettings()


def cli() -> ServiceCli:
    from export_service import bootstrap

    return ServiceCli(
        prog="python -m export_service",
        settings=_settings,
        configure=bootstrap.configure,
        http_app=bootstrap.make_app,
        role_app=bootstrap.make_role_app,
        roles={
            "relay": "publish the outbox to Kafka",
            "consume": "record push requests as exports",
            "worker": "deliver exports to the dropzones (run as many as you need)",
        },
        alembic=_alembic,
        commands={
            "restate-connections": Command(
                "publish every connection's current state again (through the outbox)", _restate
            )
        },
    )


def main() -> int:
    return cli().main()
