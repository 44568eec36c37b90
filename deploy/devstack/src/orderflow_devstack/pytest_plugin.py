"""Session fixtures `infra` and `stack`: the same code path as `make up`.

Registered from tests/conftest.py with `pytest_plugins = ["orderflow_devstack.pytest_plugin"]`.
Both start with `ORDERFLOW_PORT_OFFSET` (default 10000) and a fresh state dir
`<repo>/.run-test-<offset>` (override: `ORDERFLOW_TEST_STATE_DIR`), so a running dev
stack is left alone; teardown stops what the session started.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from orderflow_devstack import container_infra, install
from orderflow_devstack.config import (
    ALL_ROLES,
    DEMO_ORG,
    SERVICE_ROLES,
    SERVICES,
    StackConfig,
    find_repo_root,
)
from orderflow_devstack.stack import INFRA, Stack


@dataclass
class StackHandle:
    """What a test needs to reach the running stack."""

    _stack: Stack = field(repr=False)
    state_dir: Path
    port_offset: int
    ports: dict[str, int]
    superuser_dsn: str = field(repr=False)
    database_urls: dict[str, str] = field(repr=False)
    migration_database_urls: dict[str, str] = field(repr=False)
    redis_url: str
    kafka_bootstrap_servers: str
    dropzone_dir: Path
    inbox_dir: Path
    storage_dir: Path
    sftp_host: str
    sftp_port: int
    sftp_username: str
    sftp_private_key: str = field(repr=False)
    sftp_private_key_path: Path
    sftp_host_key_fingerprint: str
    sftp_known_hosts_line: str
    gateway_url: str
    service_urls: dict[str, str]
    #: every process of the services (HTTP APIs and background roles) -> its URL
    process_urls: dict[str, str]
    jwt_secret: str = field(repr=False)

    @classmethod
    def from_stack(cls, stack: Stack) -> StackHandle:
        cfg = stack.cfg
        sftp = stack.sftp_info()
        return cls(
            _stack=stack,
            state_dir=cfg.state_dir,
            port_offset=cfg.port_offset,
            ports=dict(cfg.ports),
            superuser_dsn=cfg.superuser_dsn(),
            database_urls={name: cfg.sqlalchemy_url(SERVICE_ROLES[name][0]) for name in SERVICES},
            migration_database_urls={
                name: cfg.sqlalchemy_url(SERVICE_ROLES[name][1]) for name in SERVICES
            },
            redis_url=cfg.redis_url,
            kafka_bootstrap_servers=cfg.kafka_bootstrap,
            dropzone_dir=cfg.dropzone_dir,
            inbox_dir=cfg.inbox_dir,
            storage_dir=cfg.storage_dir,
            sftp_host="127.0.0.1",
            sftp_port=cfg.ports["sftp"],
            sftp_username=str(sftp["username"]),
            sftp_private_key=Path(sftp["private_key_path"]).read_text(),
            sftp_private_key_path=Path(sftp["private_key_path"]),
            sftp_host_key_fingerprint=str(sftp["host_key_fingerprint"]),
            sftp_known_hosts_line=str(sftp["known_hosts_line"]),
            gateway_url=f"http://127.0.0.1:{cfg.ports['gateway']}",
            service_urls={name: cfg.url(name) for name in SERVICES},
            process_urls={name: cfg.url(name) for name in stack.apps},
            jwt_secret=cfg.secrets()["jwt_secret"],
        )

    # --- convenience -------------------------------------------------------------------
    @property
    def draft_api_url(self) -> str:
        return self.service_urls["draft-api"]

    @property
    def export_service_url(self) -> str:
        return self.service_urls["export-service"]

    @property
    def audit_service_url(self) -> str:
        return self.service_urls["audit-service"]

    def kafka_options(self, principal: str = "admin") -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin) that
        connects as `principal`: "admin" (super user: test plumbing), "draft-api",
        "export-service", "audit-service" (a service's own rights) or "integration"
        (read-only). Bootstrap servers, security protocol, SASL mechanism, username and
        password. Tests create every Kafka client with `**stack.kafka_options(...)`, and
        pass the same dict as `kafka=` to the shared helpers."""
        return self._stack.cfg.kafka_options(principal)

    def kafka_settings(self, principal: str) -> dict[str, Any]:
        """The Kafka fields of a service's settings for `principal` (for tests that build
        settings in-process): `kafka_bootstrap_servers`, `kafka_security_protocol`,
        `kafka_sasl_mechanism`, `kafka_username`, `kafka_password`."""
        return {key.lower(): value for key, value in self._stack.cfg.kafka_env(principal).items()}

    def service_env(self, service: str) -> dict[str, str]:
        """The env a service runs with here (DATABASE_URL, KAFKA_..., JWT_SECRET, ...),
        for tests that build a service's settings or app in-process."""
        return self._stack.cfg.service_env(service)

    def token(
        self, roles: Iterable[str] = ALL_ROLES, org: str = DEMO_ORG, sub: str = "user-1"
    ) -> str:
        return self._stack.token(roles=roles, org=org, sub=sub)

    def auth_headers(
        self, roles: Iterable[str] = ALL_ROLES, org: str = DEMO_ORG, sub: str = "user-1"
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(roles=roles, org=org, sub=sub)}"}

    def processes_of(self, service: str) -> list[str]:
        """The processes of a service (its HTTP API, then its background roles): kill
        them all to take the whole service down."""
        return self._stack.processes_of(service)

    def kill(self, name: str) -> None:
        """SIGKILL the component's process group."""
        self._stack.kill(name)

    def stop(self, name: str) -> None:
        self._stack.component(name).stop()

    def start(self, name: str) -> None:
        """Start (if not running) and wait until ready."""
        self._stack.component(name).start(wait=True)

    def restart(self, name: str) -> None:
        self._stack.restart(name)

    def is_running(self, name: str) -> bool:
        return self._stack.component(name).is_running()

    def pid(self, name: str) -> int | None:
        """The pid of a running component's process (None when it is not running)."""
        return self._stack.component(name).pid()

    def is_ready(self, name: str) -> bool:
        return self._stack.component(name).is_ready()

    def log_file(self, name: str) -> Path:
        return self._stack.cfg.log_file(name)

    def psql(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run SQL as the superuser on the orderflow database; rows (or [])."""
        return self._stack.psql_rows(sql, params)


def _say(message: str) -> None:
    print(f"[devstack] {message}", flush=True)


class _Session:
    """Starts the test stack once per session, infra first, the rest on demand."""

    def __init__(self) -> None:
        offset = int(os.environ.get("ORDERFLOW_PORT_OFFSET", "10000"))
        root = find_repo_root()
        state = Path(os.environ.get("ORDERFLOW_TEST_STATE_DIR") or root / f".run-test-{offset}")
        self.cfg = StackConfig.from_env(state_dir=state, port_offset=offset, environment="test")
        self.stack = self._new_stack()
        self.infra_up = False
        self.full_up = False
        self._lock: IO[str] | None = None
        self.infra_failure: Exception | None = None
        self.full_failure: Exception | None = None

    def _new_stack(self) -> Stack:
        stack = Stack(self.cfg, say=_say)
        if container_infra.enabled():  # ORDERFLOW_TEST_INFRA=containers
            stack.components.update(container_infra.components(self.cfg))
        return stack

    def lock(self, timeout: float = 1800) -> None:
        """Ports are machine-wide: one test session per offset at a time."""
        path = Path(f"/tmp/orderflow-stack-{self.cfg.port_offset}.lock")  # noqa: S108
        handle = path.open("a+")
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    _say(
                        f"another test session uses port offset {self.cfg.port_offset}; "
                        "waiting for it (set ORDERFLOW_PORT_OFFSET to run side by side)"
                    )
                    told = True
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked for {timeout:.0f}s") from None
                time.sleep(0.5)
        self._lock = handle

    def fresh(self) -> None:
        # leftovers of an earlier session (same offset) are stopped and wiped
        if self.cfg.state_dir.exists():
            self.stack.clean()
            # the components came from the old state dir (its number of Kafka brokers,
            # e.g. 3 after `make test-cluster`): the new stack is made for this session
            self.stack = self._new_stack()
        if container_infra.enabled():
            container_infra.remove_all(self.cfg)

    def infra(self) -> StackHandle:
        if self.infra_failure is not None:
            raise self.infra_failure
        if not self.infra_up:
            try:
                if self._lock is None:
                    self.lock()
                self.fresh()
                if not install.kafka_libs_present():
                    install.install_all(python=False)
                self.stack.up_infra()
            except Exception as exc:
                self.infra_failure = exc
                raise
            self.infra_up = True
        return StackHandle.from_stack(self.stack)

    def full(self) -> StackHandle:
        self.infra()
        if self.full_failure is not None:
            raise self.full_failure
        if not self.full_up:
            try:
                self.stack.up(seed=True)
            except Exception as exc:
                self.full_failure = exc
                raise
            self.full_up = True
        return StackHandle.from_stack(self.stack)

    def heal(self, test: str) -> None:
        """Start what a test left stopped (a failed fault test must not take the
        broker or a service away from every test after it)."""
        if self.infra_failure is not None or not self.infra_up:
            return
        full = self.full_up and self.full_failure is None
        expected = list(self.stack.components) if full else INFRA
        for name in expected:
            component = self.stack.component(name)
            if not component.is_running():
                _say(f"{name} was left stopped by {test}; starting it again")
                component.start(wait=True)

    def teardown(self) -> None:
        try:
            if self._lock is not None:
                self.stack.down()
                if container_infra.enabled():
                    container_infra.remove_all(self.cfg)
        finally:
            if self._lock is not None:
                self._lock.close()


_SESSION_KEY = pytest.StashKey[_Session]()


@pytest.fixture(scope="session")
def _devstack_session(request: pytest.FixtureRequest) -> Iterator[_Session]:
    session = _Session()
    request.session.stash[_SESSION_KEY] = session
    try:
        yield session
    finally:
        session.teardown()


@pytest.fixture(autouse=True)
def _devstack_heal(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    session = request.session.stash.get(_SESSION_KEY, None)
    if session is not None:
        session.heal(request.node.nodeid)


@pytest.fixture(scope="session")
def infra(_devstack_session: _Session) -> StackHandle:
    """Postgres, Redis, Kafka and sshd running; database, roles, schemas, topics made."""
    return _devstack_session.infra()


@pytest.fixture(scope="session")
def stack(_devstack_session: _Session) -> StackHandle:
    """infra + migrations + the three services + gateway + demo seed."""
    return _devstack_session.full()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of the full stack run last: before them, no service process competes with
    the ones infra-level tests start themselves (same consumer groups, same ports)."""
    items.sort(key=lambda item: "stack" in getattr(item, "fixturenames", ()))
