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
        roles={
            "relay": "publish the outbox to Kafka",
            "consume": "apply export results and connector changes; purge what expired",
        },
        migrations=MIGRATIONS,
    )


def main() -> int:
    return cli().main()
