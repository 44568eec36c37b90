"""`python -m export_service serve | relay | consume | worker | migrate | downgrade |
restate-connections`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from orderflow_shared.service_cli import Command, Migrations, ServiceCli

from export_service.settings import ExportSettings

MIGRATIONS = Migrations(Path(__file__).resolve().parent.parent / "migrations")
migrate = MIGRATIONS.upgrade
downgrade = MIGRATIONS.downgrade


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


def cli() -> ServiceCli:
    return ServiceCli(
        package="export_service",
        settings=ExportSettings,
        migrations=MIGRATIONS,
        commands={
            "restate-connections": Command(
                "publish every connection's current state again (through the outbox)", _restate
            )
        },
    )


def main() -> int:
    return cli().main()
