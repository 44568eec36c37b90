"""`python -m draft_api serve | relay | consume | migrate | downgrade`."""

from __future__ import annotations

from pathlib import Path

from orderflow_shared.service_cli import Migrations, ServiceCli

from draft_api.settings import DraftApiSettings

MIGRATIONS = Migrations(Path(__file__).resolve().parent.parent / "migrations")
migrate = MIGRATIONS.upgrade
downgrade = MIGRATIONS.downgrade


def cli() -> ServiceCli:
    return ServiceCli(
        package="draft_api",
        settings=DraftApiSettings,
        migrations=MIGRATIONS,
    )


def main() -> int:
    return cli().main()
