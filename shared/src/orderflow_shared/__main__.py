"""`python -m orderflow_shared topics create`, `... token ...`, `... schemas write|check`,
`... asyncapi write|check`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from orderflow_shared.auth import ROLES, mint_token
from orderflow_shared.contracts.asyncapi import asyncapi_is_stale, write_asyncapi
from orderflow_shared.contracts.schemas import stale_schemas, write_schemas
from orderflow_shared.messaging.kafka import client_options, ensure_topics
from orderflow_shared.settings import ServiceSettings


def _topics_create(_args: argparse.Namespace) -> int:
    settings = ServiceSettings()
    created = asyncio.run(
        ensure_topics(
            client_options(settings),
            settings.kafka_topic_partitions,
            settings.kafka_replication_factor,
        )
    )
    print(f"created {len(created)} topic(s): {', '.join(created) or '-'}", file=sys.stderr)
    return 0


def _acls_apply(_args: argparse.Namespace) -> int:
    """The broker's ACLs = the table of orderflow_shared.messaging.acls (run as admin)."""
    from orderflow_shared.messaging.acls import apply_acls

    settings = ServiceSettings()
    created, deleted = asyncio.run(apply_acls(client_options(settings)))
    print(f"ACLs in place: {created} created, {deleted} removed", file=sys.stderr)
    return 0


def _token(args: argparse.Namespace) -> int:
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    unknown = sorted(set(roles) - ROLES)
    if unknown:
        print(f"unknown role(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    settings = ServiceSettings()
    if settings.jwt_secret is None:  # RS256: tokens come from the identity provider
        print("no JWT_SECRET: this stack verifies tokens of an identity provider", file=sys.stderr)
        return 2
    token = mint_token(
        settings.jwt_secret.get_secret_value(),
        sub=args.sub,
        org_id=args.org,
        roles=roles,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=args.ttl,
    )
    print(token)
    return 0


def _schemas(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else None
    if args.action == "write":
        for path in write_schemas(directory):
            print(f"wrote {path}", file=sys.stderr)
        return 0
    stale = stale_schemas(directory)
    if stale:
        print(
            "event schemas out of date: "
            + ", ".join(stale)
            + " (run: python -m orderflow_shared schemas write)",
            file=sys.stderr,
        )
        return 1
    return 0


def _asyncapi(args: argparse.Namespace) -> int:
    path = Path(args.file) if args.file else None
    if args.action == "write":
        if write_asyncapi(path):
            print(f"wrote {path or 'shared/asyncapi.yaml'}", file=sys.stderr)
        return 0
    if asyncapi_is_stale(path):
        print(
            "AsyncAPI document out of date (run: python -m orderflow_shared asyncapi write)",
            file=sys.stderr,
        )
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orderflow_shared")
    commands = parser.add_subparsers(dest="command", required=True)

    topics = commands.add_parser("topics", help="Kafka topics of the contract")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(func=_topics_create)

    acls = commands.add_parser("acls", help="Kafka ACLs of the principals (as the super user)")
    acls.add_argument("action", choices=["apply"])
    acls.set_defaults(func=_acls_apply)

    token = commands.add_parser("token", help="print a development JWT (HS256, JWT_SECRET)")
    token.add_argument("--org", default="demo")
    token.add_argument("--roles", default="viewer,operator,approver,admin")
    token.add_argument("--sub", default="user-1")
    token.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds")
    token.set_defaults(func=_token)

    schemas = commands.add_parser("schemas", help="JSON Schemas of the event contracts")
    schemas.add_argument("action", choices=["write", "check"])
    schemas.add_argument("--dir", default=None, help="default: shared/schemas")
    schemas.set_defaults(func=_schemas)

    asyncapi = commands.add_parser("asyncapi", help="AsyncAPI 3.0 document of the topics")
    asyncapi.add_argument("action", choices=["write", "check"])
    asyncapi.add_argument("--file", default=None, help="default: shared/asyncapi.yaml")
    asyncapi.set_defaults(func=_asyncapi)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
