"""The container tier: the compose topology (docker-compose.yml, `make compose-up`) on
this machine's engine (docker, or podman with podman-compose), driven from the host.

The session brings up a fresh compose stack from the images `make images` built (its
own .env and volumes), runs the tests against the gateway on :8000 and takes the stack
down again (volumes and secrets too). ORDERFLOW_COMPOSE_KEEP=1 leaves it running.

`stack` here is a ComposeHandle: the part of the devstack's StackHandle the e2e tests
use (gateway_url, token, psql, redis_url, dropzone_dir, Kafka from the host, kill and
start of a process), mapped onto containers.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from orderflow_devstack.compose import SFTP_USER, ComposeStack
from orderflow_devstack.config import ALL_ROLES, DEMO_ORG, find_repo_root
from orderflow_shared.messaging.kafka import sasl_options

ROOT = find_repo_root()
COMPOSE_SH = ROOT / "deploy" / "docker" / "compose.sh"
PROJECT = os.environ.get("COMPOSE_PROJECT_NAME", "orderflow")


def engine() -> str:
    return subprocess.run(
        ["bash", "-c", f"source {ROOT}/deploy/docker/engine.sh && echo $ENGINE_KIND"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


class ComposeHandle:
    def __init__(self, compose: ComposeStack, engine: str) -> None:
        self.compose = compose
        self.engine = engine
        self.gateway_url = compose.gateway_url
        self.redis_url = f"redis://127.0.0.1:{compose.port('REDIS_HOST_PORT', 6379)}/0"
        sftp = compose.sftp()
        self.sftp_host = sftp["host"]
        self.sftp_port = sftp["port"]
        self.sftp_username = SFTP_USER
        self.sftp_host_key_fingerprint = sftp["host_key_fingerprint"]
        self.sftp_private_key = sftp["private_key"]
        # the dropzone volume, as <dir>/inbox the way the e2e tests read it
        mountpoint = self._engine(
            "volume", "inspect", f"{PROJECT}_dropzone", "--format", "{{.Mountpoint}}"
        ).strip()
        self.dropzone_dir = compose.state_dir / "dropzone"
        self.dropzone_dir.mkdir(exist_ok=True)
        link = self.dropzone_dir / "inbox"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(mountpoint)
        self.inbox_dir = link

    def _engine(self, *args: str) -> str:
        env = {**os.environ}
        if self.engine == "podman":
            env.setdefault("CONTAINERS_CONF", str(ROOT / "deploy/docker/podman/containers.conf"))
        return subprocess.run(
            [self.engine, *args], capture_output=True, text=True, check=True, env=env
        ).stdout

    def token(self, roles: Iterable[str] = ALL_ROLES, org: str = DEMO_ORG) -> str:
        return self.compose.token(roles=roles, org=org)

    def psql(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.compose.superuser_dsn, autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def kafka_options(self, principal: str = "admin") -> dict[str, Any]:
        """aiokafka options for the stack's host listener (localhost:KAFKA_HOST_PORT)."""
        key = f"KAFKA_{principal.upper().replace('-', '_')}_PASSWORD"
        return sasl_options(
            f"127.0.0.1:{self.compose.port('KAFKA_HOST_PORT', 19092)}",
            username=principal,
            password=self.compose.env[key],
            security_protocol="SASL_PLAINTEXT",
            mechanism="SCRAM-SHA-512",
        )

    # --- processes are containers: export-worker-<n> is replica n of export-worker ---
    def container(self, process: str) -> str:
        service, _, number = process.rpartition("-")
        if process.startswith("export-worker-") and number.isdigit():
            return f"{PROJECT}_{service}_{number}"
        return f"{PROJECT}_{process}_1"

    def processes_of(self, service: str) -> list[str]:
        names = self._engine(
            "ps",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
            "--format",
            "{{.Names}}",
        ).split()
        return sorted(n for n in names if n.startswith(f"{PROJECT}_{service}"))

    def kill(self, process: str) -> None:
        """SIGKILL, as `make kill` does to a devstack process."""
        self._engine("kill", "--signal", "KILL", self.container(process))

    def start(self, process: str) -> None:
        self._engine("start", self.container(process))

    def state(self, process: str) -> str:
        return self._engine(
            "inspect", "--format", "{{.State.Status}}", self.container(process)
        ).strip()


def _compose(*args: str) -> None:
    done = subprocess.run(["bash", str(COMPOSE_SH), *args], cwd=ROOT, check=False)
    if done.returncode != 0:
        pytest.fail(f"compose.sh {' '.join(args)} failed ({done.returncode})")


@pytest.fixture(scope="session")
def stack() -> Iterator[ComposeHandle]:
    """A fresh compose stack for the session (never the devstack's test stack)."""
    keep = bool(os.environ.get("ORDERFLOW_COMPOSE_KEEP"))
    if not keep:
        os.environ["CLEAN"] = "1"
        _compose("down")
    _compose("up")
    try:
        yield ComposeHandle(ComposeStack.from_repo(ROOT), engine())
    finally:
        if not keep:
            _compose("down")
            os.environ.pop("CLEAN", None)


@pytest.fixture(scope="session")
def reliability() -> list[Any]:
    """The e2e fault tests' outcome list; the container tier writes no report."""
    return []
