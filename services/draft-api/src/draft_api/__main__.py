"""`python -m draft_api serve` (HTTP + outbox relay + consumer) or `python -m draft_api migrate`."""

from __future__ import annotations

import argparse
from pathlib import Path

from orderflow_shared.service_cli import alembic_config, serve_http

from draft_api.settings import DraftApiSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(settings: DraftApiSettings, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(MIGRATIONS, settings.migrations_url), revision)


def downgrade(settings: DraftApiSettings, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(MIGRATIONS, settings.migrations_url), revision)


def serve(settings: DraftApiSettings) -> None:
    from draft_api.bootstrap import configure, make_app

    configure(settings)
    serve_http(make_app(settings), settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m draft_api")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the HTTP API, the outbox relay and the consumer")
    up = sub.add_parser("migrate", help="upgrade the draft schema (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    down = sub.add_parser("downgrade", help="downgrade the draft schema")
    down.add_argument("revision")
    args = parser.parse_args(argv)
    settings = DraftApiSettings()
    if args.command == "serve":
        serve(settings)
    elif args.command == "migrate":
        migrate(settings, args.revision)
    else:
        downgrade(settings, args.revision)


if __name__ == "__main__":
    main()
