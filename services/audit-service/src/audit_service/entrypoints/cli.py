"""`python -m audit_service serve | migrate | verify [--org ORG]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from alembic.config import Config
from orderflow_shared.logging import configure_logging
from orderflow_shared.service_cli import alembic_config as service_alembic_config
from orderflow_shared.service_cli import serve_http

from audit_service.settings import AuditSettings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def serve(settings: AuditSettings) -> int:
    from audit_service.entrypoints.http import make_app

    serve_http(make_app(settings), settings)
    return 0


def alembic_config(settings: AuditSettings) -> Config:
    """Alembic's config for schema `audit`, connecting with MIGRATION_DATABASE_URL."""
    return service_alembic_config(
        MIGRATIONS_DIR, settings.migrations_url, runtime_role=settings.runtime_role
    )


def migrate(settings: AuditSettings) -> int:
    from alembic import command

    command.upgrade(alembic_config(settings), "head")
    return 0


def verify(settings: AuditSettings, org: str | None) -> int:
    """Exit 0 when every chain holds, 1 with the first broken link otherwise."""
    from audit_service.bootstrap import build_container
    from audit_service.service_layer.verify import verify_all

    async def run() -> int:
        container = build_container(settings)
        try:
            reports = await verify_all(container.uow_factory, [org] if org else None)
        finally:
            await container.dispose()
        broken = 0
        for org_id, report in reports.items():
            line = {"org_id": org_id, "ok": report.ok, "entries_checked": report.entries_checked}
            if report.first_broken is not None:
                broken += 1
                line["first_broken"] = report.first_broken.__dict__
            print(json.dumps(line, default=str), flush=True)
        print(
            json.dumps({"orgs_checked": len(reports), "orgs_broken": broken, "ok": not broken}),
            flush=True,
        )
        return 1 if broken else 0

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit_service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="HTTP API and the Kafka ingest in one process")
    commands.add_parser("migrate", help="Alembic upgrade head (MIGRATION_DATABASE_URL)")
    check = commands.add_parser("verify", help="walk every org's hash chain")
    check.add_argument("--org", help="only this org")
    args = parser.parse_args(argv)
    settings = AuditSettings()
    configure_logging(settings.service_name, settings.log_level)
    if args.command == "serve":
        return serve(settings)
    if args.command == "migrate":
        return migrate(settings)
    return verify(settings, args.org)


if __name__ == "__main__":
    sys.exit(main())
