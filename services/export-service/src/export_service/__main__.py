"""`python -m export_service serve|migrate|downgrade`."""

from __future__ import annotations

import argparse
from pathlib import Path

from export_service.settings import ExportSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config(settings: ExportSettings):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = settings.migrations_url
    return config


def migrate(settings: ExportSettings, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(_alembic_config(settings), revision)


def downgrade(settings: ExportSettings, revision: str) -> None:
    from alembic import command

    command.downgrade(_alembic_config(settings), revision)


def serve(settings: ExportSettings) -> None:
    import uvicorn

    from export_service.bootstrap import configure, make_app

    configure(settings)
    uvicorn.run(
        make_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        proxy_headers=True,
    )


def worker(settings: ExportSettings, parent_pid: int | None) -> None:
    import asyncio

    from export_service.bootstrap import configure, run_delivery_process

    configure(settings)
    asyncio.run(run_delivery_process(settings, parent_pid))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m export_service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="HTTP API, outbox relay, consumer and delivery workers")
    up = sub.add_parser("migrate", help="upgrade the export schema (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    down = sub.add_parser("downgrade", help="downgrade the export schema")
    down.add_argument("revision")
    extra = sub.add_parser("worker", help="a delivery process only (started by `serve`)")
    extra.add_argument("--parent", type=int, default=None, help="exit when this pid is gone")
    args = parser.parse_args(argv)
    settings = ExportSettings()
    if args.command == "serve":
        serve(settings)
    elif args.command == "migrate":
        migrate(settings, args.revision)
    elif args.command == "worker":
        worker(settings, args.parent)
    else:
        downgrade(settings, args.revision)


if __name__ == "__main__":
    main()
