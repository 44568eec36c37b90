"""`python -m audit_service serve | ingest | migrate | downgrade | verify [--org ORG]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from orderflow_shared.service_cli import Command, Migrations, ServiceCli

from audit_service.settings import AuditSettings


def _grants_to(settings: AuditSettings) -> dict[str, str]:
    """The migrations grant the runtime role its rights on schema `audit`."""
    return {"runtime_role": settings.runtime_role}


MIGRATIONS = Migrations(Path(__file__).resolve().parent.parent / "migrations", _grants_to)
migrate = MIGRATIONS.upgrade
downgrade = MIGRATIONS.downgrade


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


def cli() -> ServiceCli:
    return ServiceCli(
        package="audit_service",
        settings=AuditSettings,
        migrations=MIGRATIONS,
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
