"""The whole local stack: start order, database bootstrap, topics, seed, banner."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from typing import Any

from orderflow_devstack import components as c
from orderflow_devstack import kafka_cluster, monitoring
from orderflow_devstack.config import (
    ALL_ROLES,
    DATABASE,
    DEMO_ORG,
    KAFKA_SASL_MECHANISM,
    KAFKA_SECURITY_PROTOCOL,
    SERVICE_ROLES,
    SERVICE_SCHEMAS,
    SERVICES,
    StackConfig,
)
from orderflow_devstack.procs import (
    StackError,
    group_alive,
    port_open,
    read_pid,
    run,
    stop_group,
    wait_until,
)
from orderflow_devstack.tokens import mint

INFRA = ("postgres", "redis", "kafka", "sftp")

Say = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default reporter: say nothing."""


class Stack:
    def __init__(self, cfg: StackConfig, say: Say = _quiet) -> None:
        self.cfg = cfg
        self.say = say
        self.components: dict[str, c.Component] = {
            "postgres": c.Postgres(cfg),
            "redis": c.Redis(cfg),
            "kafka": c.Kafka(cfg),
            **kafka_cluster.extra_brokers(cfg),  # KAFKA_BROKERS=3: kafka-2, kafka-3
            "sftp": c.Sftp(cfg),
        }
        for service in SERVICES:
            self.components[service] = c.SERVICE_COMPONENTS[service](cfg)
        for process, (service, role) in cfg.role_processes.items():
            self.components[process] = c.SERVICE_COMPONENTS[service](cfg, process, role)
        self.components["gateway"] = c.Gateway(cfg)
        self.components.update(monitoring.components(cfg))  # MONITORING=1: zipkin, prometheus

    @property
    def apps(self) -> list[str]:
        """Every process of the three services: the HTTP APIs, then the roles."""
        return [*SERVICES, *self.cfg.role_processes]

    def processes_of(self, service: str) -> list[str]:
        return self.cfg.processes_of(service)

    def component(self, name: str) -> c.Component:
        try:
            return self.components[name]
        except KeyError:
            known = ", ".join(self.components)
            raise StackError(f"unknown component {name!r} (known: {known})") from None

    @property
    def sftp(self) -> c.Sftp:
        sftp = self.components["sftp"]
        assert isinstance(sftp, c.Sftp)
        return sftp

    # --- lifecycle -----------------------------------------------------------------
    def _start_all(self, names: Iterable[str]) -> None:
        """Spawn all first, then wait for each: the slow ones start in parallel."""
        names = list(names)
        for name in names:
            self.component(name).start(wait=False)
        for name in names:
            started = time.monotonic()
            self.component(name).wait_ready()
            self.say(f"{name}: ready ({time.monotonic() - started:.1f}s)")

    def up_infra(self) -> None:
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.logs_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.secrets()
        self._start_all(
            [
                *INFRA,
                *kafka_cluster.extra_broker_names(self.cfg),
                *(n for n in monitoring.MONITORING_PORTS if n in self.components),
            ]
        )
        self.bootstrap_database()
        self.say("postgres: database, schemas and roles in place")
        self.create_topics()
        self.say("kafka: topics in place")
        self.write_stack_file()

    def up(self, *, seed: bool = True) -> None:
        self.up_infra()
        for name in SERVICES:
            service = self.component(name)
            assert isinstance(service, c.Service)
            if not any(self.component(p).is_running() for p in self.processes_of(name)):
                service.migrate()
                self.say(f"{name}: migrated")
        self._start_all([*self.apps, "gateway"])
        if seed:
            self.seed()

    def down(self) -> None:
        for name in reversed(list(self.components)):
            component = self.components[name]
            if component.is_running():
                component.stop()
                self.say(f"{name}: stopped")
        self._stop_strays()
        self.wait_ports_closed()

    def _stop_strays(self) -> None:
        """Stop processes an earlier `up` started that this layout lacks (export-worker-3
        of a run with EXPORT_WORKERS=3)."""
        if not self.cfg.pids_dir.is_dir():
            return
        for pid_file in sorted(self.cfg.pids_dir.glob("export-worker-*.pid")):
            if pid_file.stem in self.components:
                continue
            pid = read_pid(pid_file)
            if pid is not None and group_alive(pid):
                stop_group(pid)
                self.say(f"{pid_file.stem}: stopped (not in this layout)")
            pid_file.unlink(missing_ok=True)

    def wait_ports_closed(self, timeout: float = 20) -> None:
        ports = [p for key, p in self.cfg.ports.items() if key != "kafka-controller"]
        ports.append(self.cfg.ports["kafka-controller"])

        def closed() -> bool:
            return not any(port_open(port) for port in ports)

        wait_until(closed, timeout=timeout, what="ports still listening after down")

    def clean(self) -> None:
        self.down()
        system_dir = self.cfg.system_dir
        if self.cfg.state_dir.exists() or self.cfg.state_dir.is_symlink():
            shutil.rmtree(self.cfg.state_dir)
        if system_dir != self.cfg.state_dir and system_dir.exists():
            shutil.rmtree(system_dir)

    def status(self) -> dict[str, str]:
        return {name: comp.status() for name, comp in self.components.items()}

    def restart(self, name: str) -> None:
        self.component(name).restart()

    def kill(self, name: str) -> None:
        self.component(name).kill()

    # --- database ------------------------------------------------------------------
    def bootstrap_database(self) -> None:
        """Database `orderflow`, one schema and one role per service (idempotent)."""
        import psycopg
        from psycopg import sql

        admin_dsn = self.cfg.superuser_dsn().rsplit("/", 1)[0] + "/postgres"
        roles = sorted({role for pair in SERVICE_ROLES.values() for role in pair})
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            for role in roles:
                found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = "ALTER" if found.fetchone() else "CREATE"
                conn.execute(
                    sql.SQL(
                        verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}"
                    ).format(sql.Identifier(role), sql.Literal(self.cfg.role_password(role)))
                )
        with psycopg.connect(self.cfg.superuser_dsn(), autocommit=True) as conn:
            db = sql.Identifier(DATABASE)
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET search_path = draft, export, audit, public").format(
                    db
                )
            )
            for service, schema in SERVICE_SCHEMAS.items():
                runtime, owner = SERVICE_ROLES[service]
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
                        sql.Identifier(schema), sql.Identifier(owner)
                    )
                )
                conn.execute(
                    sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(
                        sql.Identifier(schema), sql.Identifier(owner)
                    )
                )
                for role in {runtime, owner}:
                    conn.execute(
                        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                            db, sql.Identifier(role)
                        )
                    )
                    conn.execute(
                        sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}").format(
                            sql.Identifier(role), db, sql.Identifier(schema)
                        )
                    )
                if runtime != owner:
                    conn.execute(
                        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                            sql.Identifier(schema), sql.Identifier(runtime)
                        )
                    )

    def psql_rows(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.cfg.superuser_dsn(), autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return list(cursor.fetchall()) if cursor.description else []

    # --- kafka ---------------------------------------------------------------------
    def create_topics(self) -> None:
        """The contract topics (as `admin`, the super user), then the ACL table."""
        env = {
            **self.cfg.kafka_env("admin"),
            # one place for the topic settings: orderflow_devstack.kafka_cluster
            "KAFKA_TOPIC_PARTITIONS": str(kafka_cluster.topic_policy(self.cfg).partitions),
            "KAFKA_REPLICATION_FACTOR": str(kafka_cluster.topic_policy(self.cfg).replication),
            "ORDERFLOW_ENV": self.cfg.environment,
        }
        run(
            [self.cfg.python, "-m", "orderflow_shared", "topics", "create"],
            env=env,
            cwd=self.cfg.repo_root,
            log_file=self.cfg.log_file("topics"),
            what="topics: python -m orderflow_shared topics create",
            timeout=120,
        )
        missing = c.run_coroutine(missing_topics(self.cfg.kafka_options("admin")))
        if missing:
            raise StackError(
                "topics: `python -m orderflow_shared topics create` exited 0 but these "
                f"topics do not exist: {', '.join(sorted(missing))}"
            )
        kafka_cluster.reconcile_topics(self.cfg, self.say)  # existing ones checked too
        self.apply_acls()

    def apply_acls(self) -> None:
        """Make the broker's ACLs equal orderflow_shared.messaging.acls.ACLS (idempotent)."""
        from orderflow_shared.messaging.acls import apply_acls

        created, deleted = c.run_coroutine(apply_acls(self.cfg.kafka_options("admin")))
        if created or deleted:
            self.say(f"kafka: ACLs in place ({created} created, {deleted} removed)")

    # --- stack.json, tokens, seed --------------------------------------------------
    def sftp_info(self) -> dict[str, Any]:
        return self.sftp.describe()

    def write_stack_file(self) -> None:
        self.cfg.write_stack_file(self.sftp_info())

    def token(
        self, roles: Iterable[str] = ALL_ROLES, org: str = DEMO_ORG, sub: str = "user-1"
    ) -> str:
        return mint(self.cfg.secrets()["jwt_secret"], roles=roles, org=org, sub=sub)

    def seed(self) -> None:
        from orderflow_devstack.seed import seed_demo

        seed_demo(self)

    def integration_credentials(self) -> list[str]:
        return integration_credentials_lines(self.cfg)

    def banner(self) -> str:
        token = self.token()
        gw = self.cfg.gateway_url
        lines = [
            "",
            "OrderFlow local stack is ready.",
            "",
            f"  gateway          {gw}   (API docs: {gw}/docs)",
        ]
        for name in SERVICES:
            lines.append(
                f"  {name:<16} {self.cfg.url(name)}/docs   (via gateway: {gw}/_svc/{name}/docs)"
            )
        sftp = self.sftp_info()
        lines += [
            f"  postgres         {self.cfg.superuser_dsn().split('@')[1]}   (make psql)",
            f"  redis            {self.cfg.redis_url}   (make redis-cli)",
            f"  kafka            {self.cfg.kafka_bootstrap}   (SASL/SCRAM; make kafka-credentials)",
            f"  sftp dropzone    sftp://{sftp.get('username')}@127.0.0.1:{self.cfg.ports['sftp']}"
            f"/inbox   host key {sftp.get('host_key_fingerprint')}",
            f"  dropzone files   {self.cfg.inbox_dir}",
            f"  logs             {self.cfg.logs_dir}",
            f"  stack.json       {self.cfg.stack_file}",
            *monitoring.banner_lines(self.cfg),
            "",
            *self.integration_credentials(),
            "",
            f"Dev JWT for org {DEMO_ORG!r} with roles {', '.join(ALL_ROLES)} (12 h):",
            "",
            f"export JWT_TOKEN={token}",
        ]
        return "\n".join(lines)


def integration_credentials_lines(cfg: StackConfig) -> list[str]:
    from orderflow_shared.messaging.acls import (
        INTEGRATION,
        INTEGRATION_GROUP_PREFIX,
        PUBLISHED_TOPICS,
    )

    return [
        "Kafka for integrators (read-only on the published topics):",
        f"  bootstrap servers  {cfg.kafka_bootstrap}",
        f"  security protocol  {KAFKA_SECURITY_PROTOCOL}",
        f"  SASL mechanism     {KAFKA_SASL_MECHANISM}",
        f"  username           {INTEGRATION}",
        f"  password           {cfg.kafka_password(INTEGRATION)}",
        f"  consumer groups    {INTEGRATION_GROUP_PREFIX}<anything>",
        f"  topics             {', '.join(PUBLISHED_TOPICS)}",
    ]


async def missing_topics(options: dict[str, Any]) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient
    from orderflow_shared.contracts.topics import ALL_TOPICS

    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return {str(topic) for topic in ALL_TOPICS} - existing
