"""What every service's command line shares: its commands (`ServiceCli`), its Alembic
environment and its HTTP server."""

from __future__ import annotations

import argparse
import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from alembic.config import Config
    from fastapi import FastAPI
    from sqlalchemy import MetaData

    from orderflow_shared.settings import ServiceSettings


def alembic_config(migrations: Path, url: str, **attributes: Any) -> Config:
    """The Alembic config of a service's `migrations/` dir, connecting with `url`."""
    from alembic.config import Config

    config = Config(str(migrations / "alembic.ini"))
    config.set_main_option("script_location", str(migrations))
    config.attributes["url"] = url
    config.attributes.update(attributes)
    return config


def upgrade_schema(config: Config, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(config, revision)


def downgrade_schema(config: Config, revision: str) -> None:
    from alembic import command

    command.downgrade(config, revision)


def _no_attributes(settings: Any) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class Migrations:
    """A service's Alembic environment: its `migrations/` dir, run with the settings'
    MIGRATION_DATABASE_URL. `attributes(settings)` adds what its migrations read from
    the config (audit-service: the runtime role they grant to)."""

    directory: Path
    attributes: Callable[[Any], Mapping[str, Any]] = _no_attributes

    def config(self, settings: ServiceSettings) -> Config:
        return alembic_config(self.directory, settings.migrations_url, **self.attributes(settings))

    def upgrade(self, settings: ServiceSettings, revision: str = "head") -> None:
        upgrade_schema(self.config(settings), revision)

    def downgrade(self, settings: ServiceSettings, revision: str) -> None:
        downgrade_schema(self.config(settings), revision)


def uvicorn_options(settings: ServiceSettings) -> dict[str, Any]:
    """What every service's uvicorn runs with: our JSON logging, and limits (requests in
    flight, idle keep-alive, header bytes) that suit the gateway in front of it."""
    return {
        "host": settings.http_host,
        "port": settings.http_port,
        "log_config": None,
        "proxy_headers": True,
        "access_log": settings.access_log,
        "limit_concurrency": settings.http_limit_concurrency,
        "timeout_keep_alive": settings.http_keepalive_timeout_seconds,
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
        "timeout_graceful_shutdown": settings.http_graceful_shutdown_seconds,
    }


def serve_http(app: FastAPI, settings: ServiceSettings) -> None:
    """uvicorn the same way for every service."""
    import uvicorn

    uvicorn.run(app, **uvicorn_options(settings))


def run_migrations(schema: str, metadata: MetaData, *, create_schema: bool = True) -> None:
    """The body of every service's Alembic `env.py`: online migrations of one schema,
    with Alembic's version table inside that schema.

    `create_schema` creates the schema when missing (the devstack creates it with its
    owner; a bare database gets it here); audit's schema is owned by another role.
    """
    from alembic import context
    from sqlalchemy import create_engine, pool, text

    from orderflow_shared.db import sync_url

    config = context.config
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: run the service's `migrate` command")
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            # look first: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even
            # when the schema is there, which a service's role does not have
            found = connection.execute(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
            ).scalar()
            if create_schema and not found:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            connection.commit()  # Alembic must start its own transactions
            context.configure(
                connection=connection,
                target_metadata=metadata,
                version_table_schema=schema,
                include_schemas=True,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


# --- the command line of every service -------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A service's own extra command: `run(settings, args)` returns the exit status."""

    help: str
    run: Callable[[Any, argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] = field(default=lambda parser: None)


class Bootstrap(Protocol):
    """What the command line takes from a service's `bootstrap` module."""

    @property
    def ROLES(self) -> Mapping[str, Callable[..., Any]]: ...

    def configure(self, settings: Any) -> None: ...

    def make_app(self, settings: Any, *, roles: Iterable[str] = ()) -> FastAPI: ...

    def make_role_app(self, settings: Any, role: str) -> FastAPI: ...


@dataclass(frozen=True)
class ServiceCli:
    """What `python -m <service>` offers, the same for every service:

    - `serve`: the HTTP API;
    - one command per background role (`bootstrap.ROLES`), each its own process
      serving `/livez`, `/readyz` and `/metrics` on HTTP_PORT;
    - `migrate [revision]` and `downgrade revision` of the service's schema (`migrations`);
    - the service's own `commands`.
    """

    package: str
    settings: Callable[[], ServiceSettings]
    migrations: Migrations
    commands: Mapping[str, Command] = field(default_factory=dict)

    @property
    def prog(self) -> str:
        return f"python -m {self.package}"

    @property
    def bootstrap(self) -> Bootstrap:
        """The service's `<package>.bootstrap`, imported only when the command line runs."""
        return cast(Bootstrap, importlib.import_module(f"{self.package}.bootstrap"))

    @property
    def roles(self) -> dict[str, str]:
        """The background roles of `bootstrap.ROLES`, each with the first line of its
        function's docstring as its help."""
        return {
            name: (inspect.getdoc(role) or name).splitlines()[0]
            for name, role in self.bootstrap.ROLES.items()
        }

    def parser(self) -> argparse.ArgumentParser:
        roles = self.roles
        clash = set(roles) & ({"serve", "migrate", "downgrade"} | set(self.commands))
        if clash:
            raise ValueError(f"a role and a command share the name(s) {sorted(clash)}")
        parser = argparse.ArgumentParser(prog=self.prog)
        sub = parser.add_subparsers(dest="command", required=True)
        sub.add_parser("serve", help="the HTTP API")
        for role, text in roles.items():
            sub.add_parser(
                role, help=f"{text.rstrip('.')} (its own process: health and metrics on HTTP_PORT)"
            )
        up = sub.add_parser("migrate", help="upgrade the service's schema (default: to head)")
        up.add_argument("revision", nargs="?", default="head")
        down = sub.add_parser("downgrade", help="downgrade the service's schema")
        down.add_argument("revision")
        for name, command in self.commands.items():
            command.arguments(sub.add_parser(name, help=command.help))
        return parser

    def main(self, argv: Sequence[str] | None = None) -> int:
        args = self.parser().parse_args(argv)
        settings = self.settings()
        bootstrap = self.bootstrap
        bootstrap.configure(settings)
        if args.command == "serve":
            serve_http(bootstrap.make_app(settings), settings)
            return 0
        if args.command in self.roles:
            serve_http(bootstrap.make_role_app(settings, args.command), settings)
            return 0
        if args.command == "migrate":
            self.migrations.upgrade(settings, args.revision)
            return 0
        if args.command == "downgrade":
            self.migrations.downgrade(settings, args.revision)
            return 0
        return self.commands[args.command].run(settings, args)
