"""`python -m audit_service serve | ingest | migrate | downgrade | verify [--org ORG]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from alembic.config import Config
from orderflow_shared.service_cli import (
    Command,
    ServiceCli,
    downgrade_schema,
    upgrade_schema,
)
from orderflow_shared.service_cli import alembic_config as service_alembic_config
from orderflow_shared.settings import ServiceSettings

from audit_service.settings import AuditSettings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(settings: AuditSettings) -> Config:
    """Alembic's config for schema `audit`, connecting with MIGRATION_DATABASE_URL."""
    return service_alembic_config(
        MIGRATIONS_DIR, settings.migrations_url, runtime_role=settings.runtime_role
    )


def migrate(settings: AuditSettings, revision: str = "head") -> int:
    upgrade_schema(alembic_config(settings), revision)
    return 0


def downgrade(settings: AuditSettings, revision: str) -> int:
    downgrade_schema(alembic_config(settings), revision)
    return 0


def _verify(settings: AuditSettings, args: argparse.Namespace) -> int:
    from audit_service.entrypoints.retention import verify_command

    return verify_command(settings, args.org, kafka=False)  # checkpoints from the table


def _audit_verify(settings: AuditSettings, args: argparse.Namespace) -> int:
    from audit_service.entrypoints.retention import verify_command

    return verify_command(settings, args.org, kafka=True)


def _retention(settings: AuditSettings, args: argparse.Namespace) -> int:
    from audit_service.entrypoints.retention import retention_command

    return retention_command(settings, args.org)


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", help="only this org")


def _settings() -> ServiceSettings:
    return AuditSettings()


def cli() -> ServiceCli:
    from audit_service import bootstrap

    return ServiceCli(
        prog="python -m audit_service",
        settings=_settings,
        configure=bootstrap.configure,
        http_app=bootstrap.make_app,
        role_app=bootstrap.make_role_app,
        roles={
            "ingest": "file every topic and the dead letters into the hash chains",
            "retention-loop": "sign the chain heads and apply retention, every interval",
        },
        alembic=alembic_config,
        commands={
            "verify": Command("walk every org's hash chain", _verify, _verify_arguments),
            "audit-verify": Command(
                "verify against the signed checkpoints of topic audit.checkpoint too",
                _audit_verify,
                _verify_arguments,
            ),
            "retention": Command(
                "archive and prune what is past retention, sign the chain heads",
                _retention,
                _verify_arguments,
            ),
        },
    )


def main() -> int:
    return cli().main()
