"""`python -m export_service serve|migrate|downgrade`."""

from __future__ import annotations

import argparse
from pathlib import Path

from orderflow_shared.service_cli import alembic_config, serve_http

from export_service.settings import ExportSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(settings: ExportSettings, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(MIGRATIONS, settings.migrations_url), revision)


def downgrade(settings: ExportSettings, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(MIGRATIONS, settings.migrations_url), revision)


def serve(settings: ExportSettings) -> None:
    from export_service.bootstrap import configure, make_app

    configure(settings)
    serve_http(make_app(settings), settings)


def worker(settings: ExportSettings, parent_pid: int | None) -> None:
    import asyncio

    from export_service.bootstrap import configure, run_delivery_process

    configure(settings)
    asyncio.run(run_delivery_process(settings, parent_pid))


def restate_connections(settings: ExportSettings) -> int:
    """Queue every connection's current state on `erp_connection.changed` (keyed by its
    id) in the outbox; the relay of a running `serve` publishes it. How many."""
    import asyncio

    from export_service.bootstrap import build
    from export_service.service_layer.connections import restate_connections as restate

    async def run() -> int:
        container = build(settings)
        try:
            return await restate(container.uow_factory())
        finally:
            await container.sftp_pool.close()
            await container.engine.dispose()

    return asyncio.run(run())


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
    sub.add_parser(
        "restate-connections",
        help="publish every connection's current state again (through the outbox)",
    )
    args = parser.parse_args(argv)
    settings = ExportSettings()
    if args.command == "serve":
        serve(settings)
    elif args.command == "migrate":
        migrate(settings, args.revision)
    elif args.command == "worker":
        worker(settings, args.parent)
    elif args.command == "restate-connections":
        print(f"{restate_connections(settings)} connection(s) restated")
    else:
        downgrade(settings, args.revision)


if __name__ == "__main__":
    main()
