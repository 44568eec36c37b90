"""`python -m orderflow_devstack <command>`: the local stack without Docker."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

from orderflow_devstack import install
from orderflow_devstack.config import ALL_ROLES, DATABASE, DEMO_ORG, SERVICES, StackConfig
from orderflow_devstack.procs import StackError
from orderflow_devstack.stack import Stack


def say(message: str) -> None:
    print(f"[devstack] {message}", flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orderflow_devstack")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="install what is missing (apt, uv sync, Kafka jars)")
    up = sub.add_parser("up", help="start everything, migrate, seed, print the banner")
    up.add_argument("--no-install", action="store_true")
    up.add_argument("--no-seed", action="store_true")
    up.add_argument("--infra-only", action="store_true")
    sub.add_parser("down", help="stop everything (data is kept)")
    sub.add_parser("clean", help="stop everything and remove the state dir")
    sub.add_parser("status", help="one line per component")
    token = sub.add_parser("token", help="print a dev JWT (last line)")
    token.add_argument("--roles", "--role", default=",".join(ALL_ROLES))
    token.add_argument("--org", default=DEMO_ORG)
    token.add_argument("--sub", default="user-1")
    for name in ("restart", "kill", "start", "stop"):
        cmd = sub.add_parser(name, help=f"{name} one component")
        cmd.add_argument("name")
    sub.add_parser(
        "kafka-credentials", help="the integration principal's Kafka credentials (read-only)"
    )
    sub.add_parser("psql", help="psql on the orderflow database as superuser")
    sub.add_parser("redis-cli", help="redis-cli on the stack's Redis")
    exe = sub.add_parser("exec", help="run a command with a service's environment")
    exe.add_argument("service")
    exe.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg = StackConfig.from_env()
    stack = Stack(cfg, say=say)
    try:
        return _dispatch(args, cfg, stack)
    except StackError as exc:
        print(f"[devstack] ERROR: {exc}", file=sys.stderr, flush=True)
        return 1


def _dispatch(args: argparse.Namespace, cfg: StackConfig, stack: Stack) -> int:
    command = args.command
    if command == "install":
        install.install_all()
    elif command == "up":
        started = time.monotonic()
        if not args.no_install:
            install.install_all(python=False)
        if args.infra_only:
            stack.up_infra()
        else:
            stack.up(seed=not args.no_seed)
        stack.write_stack_file()
        print(stack.banner())
        say(f"up took {time.monotonic() - started:.1f}s")
    elif command == "down":
        stack.down()
        say("everything stopped; no listener left on the stack's ports")
    elif command == "clean":
        stack.clean()
        say(f"removed {cfg.state_dir}")
    elif command == "status":
        for name, state in stack.status().items():
            print(f"{name:<24} {state}")
    elif command == "token":
        roles = [role.strip() for role in args.roles.split(",") if role.strip()]
        print(stack.token(roles=roles, org=args.org, sub=args.sub))
    elif command in ("restart", "kill", "start", "stop"):
        component = stack.component(args.name)
        if command == "restart":
            component.restart()
        elif command == "kill":
            component.kill()
        elif command == "start":
            component.start()
        else:
            component.stop()
        say(f"{args.name}: {component.status()}")
    elif command == "kafka-credentials":
        print("\n".join(stack.integration_credentials()))
    elif command == "psql":
        _exec_psql(cfg)
    elif command == "exec":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not argv or args.service not in SERVICES:
            raise StackError(f"usage: exec <{'|'.join(SERVICES)}> -- command ...")
        os.environ.update(cfg.service_env(args.service))
        os.execvp(argv[0], argv)  # noqa: S606
    elif command == "redis-cli":
        binary = shutil.which("redis-cli") or "redis-cli"
        os.execv(binary, [binary, "-h", "127.0.0.1", "-p", str(cfg.ports["redis"])])  # noqa: S606
    return 0


def _exec_psql(cfg: StackConfig) -> None:
    binary = shutil.which("psql") or "psql"
    os.environ["PGPASSWORD"] = cfg.role_password("postgres")
    argv = [
        binary,
        "-h",
        "127.0.0.1",
        "-p",
        str(cfg.ports["postgres"]),
        "-U",
        "postgres",
        "-d",
        DATABASE,
    ]
    if not sys.stdin.isatty():
        argv += ["-v", "ON_ERROR_STOP=1"]
    os.execv(binary, argv)  # noqa: S606
