"""The compose stack (docker-compose.yml, `make compose-up`) seen from the host.

`python -m orderflow_devstack.compose seed` gives it the demo data `make up` gives the
local stack (orderflow_devstack.seed: the demo org's dropzone connection, READY
drafts), through its gateway; `... token` prints a JWT of the demo org signed with the
stack's JWT_SECRET. Everything comes from the stack's generated .env
(deploy/kafka/compose-env.sh) and .run-compose/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orderflow_devstack.config import ALL_ROLES, DATABASE, DEMO_ORG, find_repo_root
from orderflow_devstack.procs import StackError, ssh_fingerprint
from orderflow_devstack.tokens import mint

#: the dropzone as the export-service containers reach it (service name, container port)
SFTP_SERVICE = ("sftp", 2222)
SFTP_USER = "orderflow-sftp"


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines (a value may be double-quoted), as compose reads them."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if not sep or name.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        values[name.strip()] = value
    return values


@dataclass(frozen=True)
class ComposeStack:
    """Where the compose stack's published ports and secrets are."""

    env: dict[str, str]
    state_dir: Path

    @classmethod
    def from_repo(cls, root: Path | None = None) -> ComposeStack:
        root = root or find_repo_root()
        env_file = Path(os.environ.get("ORDERFLOW_COMPOSE_ENV", root / ".env"))
        state = Path(os.environ.get("ORDERFLOW_COMPOSE_STATE", root / ".run-compose"))
        if not env_file.exists():
            raise StackError(f"compose: {env_file} missing; run `make compose-up`")
        return cls(env=read_env_file(env_file), state_dir=state)

    def port(self, name: str, default: int) -> int:
        return int(os.environ.get(name, self.env.get(name, default)))

    @property
    def gateway_url(self) -> str:
        return os.environ.get("ORDERFLOW_COMPOSE_GATEWAY_URL", "http://127.0.0.1:8000")

    def token(self, roles: Iterable[str] = ALL_ROLES, org: str = DEMO_ORG) -> str:
        return mint(self.env["JWT_SECRET"], roles=roles, org=org)

    @property
    def superuser_dsn(self) -> str:
        port = self.port("POSTGRES_HOST_PORT", 5432)
        password = self.env["POSTGRES_PASSWORD"]
        return f"postgresql://postgres:{password}@127.0.0.1:{port}/{DATABASE}"

    def psql_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.superuser_dsn, connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())

    def host_key_fingerprint(self) -> str:
        """SHA256:... of the dropzone's host key, read from its published port."""
        port = self.port("SFTP_HOST_PORT", 2222)
        scan = subprocess.run(
            ["ssh-keyscan", "-t", "ed25519", "-p", str(port), "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        keys = "".join(line + "\n" for line in scan.stdout.splitlines() if " ssh-" in line)
        if not keys:
            raise StackError(f"compose: no host key from the dropzone on port {port}")
        return ssh_fingerprint(keys, "compose")

    def sftp(self) -> dict[str, Any]:
        host, port = SFTP_SERVICE
        return {
            "host": host,
            "port": port,
            "username": SFTP_USER,
            "host_key_fingerprint": self.host_key_fingerprint(),
            "private_key": (self.state_dir / "sftp_client_key").read_text(),
        }

    def connector_known_to_draft_api(self) -> bool:
        rows = self.psql_rows(
            "SELECT count(*) FROM draft.erp_connector WHERE org_id = %s AND is_active",
            (DEMO_ORG,),
        )
        return bool(rows and rows[0][0])


def start_phases(compose_file: Path, profiles: Iterable[str] = ()) -> list[list[str]]:
    """The services of a compose file in start order: each phase holds the services
    whose dependencies are all in earlier phases (a service of a profile only when the
    profile is active). compose.sh starts phase by phase and waits for each to be
    healthy (or, for one-shot jobs, done) where the engine cannot enforce depends_on
    conditions (podman 4.3 with podman-compose ignores them)."""
    import yaml

    active = set(profiles)
    services: dict[str, Any] = {
        name: spec
        for name, spec in yaml.safe_load(compose_file.read_text())["services"].items()
        if not spec.get("profiles") or active & set(spec["profiles"])
    }
    deps = {name: set(spec.get("depends_on") or ()) for name, spec in services.items()}
    phases: list[list[str]] = []
    placed: set[str] = set()
    while len(placed) < len(services):
        phase = sorted(n for n in services if n not in placed and deps[n] <= placed)
        if not phase:
            raise StackError(f"compose: a depends_on cycle among {sorted(set(services) - placed)}")
        phases.append(phase)
        placed |= set(phase)
    return phases


def seed(stack: ComposeStack) -> None:
    from orderflow_devstack.seed import seed_demo_at

    seed_demo_at(
        gateway_url=stack.gateway_url,
        token=stack.token(),
        sftp=stack.sftp(),
        connector_known=stack.connector_known_to_draft_api,
        say=print,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m orderflow_devstack.compose")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("seed", help="the demo org's dropzone connection and READY drafts")
    sub.add_parser("phases", help="the services in start order, one phase a line")
    token = sub.add_parser("token", help="a JWT of the demo org (the last line)")
    token.add_argument("--roles", default=",".join(ALL_ROLES))
    token.add_argument("--org", default=DEMO_ORG)
    args = parser.parse_args(argv)
    if args.command == "phases":
        profiles = [p for p in os.environ.get("COMPOSE_PROFILES", "").split(",") if p]
        for phase in start_phases(find_repo_root() / "docker-compose.yml", profiles):
            print(" ".join(phase))
        return
    stack = ComposeStack.from_repo()
    if args.command == "seed":
        seed(stack)
    else:
        print(stack.token(roles=args.roles.split(","), org=args.org))


if __name__ == "__main__":
    main()
