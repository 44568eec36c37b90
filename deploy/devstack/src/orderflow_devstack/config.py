"""Where the local stack lives: repo root, state dir, ports, secrets, stack.json."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orderflow_shared.messaging.acls import INTEGRATION_GROUP_PREFIX, PRINCIPALS

#: Dev default ports (docs/DEVELOPING.md); ORDERFLOW_PORT_OFFSET is added to each.
DEFAULT_PORTS: dict[str, int] = {
    "gateway": 8000,
    "draft-api": 8101,
    "export-service": 8102,
    "audit-service": 8103,
    "postgres": 5432,
    "redis": 6379,
    "kafka": 9092,
    "kafka-controller": 9093,
    "sftp": 2222,
}

#: The background roles, each its own process (`python -m <package> <role>`, serving
#: /livez, /readyz and /metrics on its own port): process name -> (service, role).
#: export-service's `worker` runs as export-worker-1..N (N: EXPORT_WORKERS).
ROLE_PROCESSES: dict[str, tuple[str, str]] = {
    "draft-api-relay": ("draft-api", "relay"),
    "draft-api-consumer": ("draft-api", "consume"),
    "export-service-relay": ("export-service", "relay"),
    "export-service-consumer": ("export-service", "consume"),
    "audit-service-ingest": ("audit-service", "ingest"),
    "audit-service-retention": ("audit-service", "retention-loop"),
}
ROLE_PORTS: dict[str, int] = {
    "draft-api-relay": 8111,
    "draft-api-consumer": 8112,
    "export-service-relay": 8113,
    "export-service-consumer": 8114,
    "audit-service-ingest": 8115,
    "audit-service-retention": 8116,
}
#: export-worker-<n> listens on EXPORT_WORKER_BASE_PORT + n
EXPORT_WORKER_BASE_PORT = 8120
DEFAULT_EXPORT_WORKERS = 2
MAX_EXPORT_WORKERS = 16


def export_worker_name(number: int) -> str:
    return f"export-worker-{number}"


#: service name -> python import package
SERVICES: dict[str, str] = {
    "draft-api": "draft_api",
    "export-service": "export_service",
    "audit-service": "audit_service",
}

#: Postgres roles created by the devstack: service -> (runtime role, schema owner role)
SERVICE_ROLES: dict[str, tuple[str, str]] = {
    "draft-api": ("draft_api", "draft_api"),
    "export-service": ("export_service", "export_service"),
    "audit-service": ("audit_service", "audit_owner"),
}
SERVICE_SCHEMAS: dict[str, str] = {
    "draft-api": "draft",
    "export-service": "export",
    "audit-service": "audit",
}

DATABASE = "orderflow"
SFTP_USER = "orderflow-sftp"
DEMO_ORG = "demo"
ALL_ROLES = ("viewer", "operator", "approver", "admin")
SYSTEM_BASE = Path("/var/lib/orderflow")


#: Kafka principals (SCRAM users); the ACL table names them
KAFKA_PRINCIPALS = PRINCIPALS
KAFKA_SECURITY_PROTOCOL = "SASL_PLAINTEXT"  # loopback only
KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"


def kafka_secret_key(principal: str) -> str:
    return f"kafka_{principal.replace('-', '_')}_password"


def _password() -> str:
    return secrets.token_urlsafe(18)


def _secret_makers() -> dict[str, Any]:
    makers: dict[str, Any] = {
        "postgres_password": _password,
        "draft_api_password": _password,
        "export_service_password": _password,
        "audit_owner_password": _password,
        "audit_service_password": _password,
        "export_encryption_key": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
        # HS256 signing key of the stack's dev tokens (`make token`)
        "jwt_secret": lambda: secrets.token_urlsafe(48),
        # Ed25519 private key (32 random bytes, base64) of audit-service's checkpoints
        "audit_signing_key": lambda: base64.b64encode(os.urandom(32)).decode(),
    }
    for principal in KAFKA_PRINCIPALS:
        makers[kafka_secret_key(principal)] = _password
    return makers


#: Delivery settings of the test stack: deadlines and backoff in seconds, not hours,
#: so "down longer than the deadline" fits in a test. Each can be overridden from the
#: environment of the test run (`make test-nemesis` gives a longer deadline).
TEST_DELIVERY_ENV: dict[str, str] = {
    "EXPORT_DELIVERY_DEADLINE_SECONDS": "45",
    "EXPORT_BACKOFF_BASE_SECONDS": "0.2",
    "EXPORT_BACKOFF_MAX_SECONDS": "2",
    "EXPORT_CIRCUIT_FAILURE_THRESHOLD": "5",
    "EXPORT_CIRCUIT_PROBE_INTERVAL_SECONDS": "1",
    "EXPORT_CONNECTION_MAX_IN_FLIGHT": "32",
}


def delivery_env_for_tests() -> dict[str, str]:
    return {name: os.environ.get(name, value) for name, value in TEST_DELIVERY_ENV.items()}


def find_repo_root(start: Path | None = None) -> Path:
    """The workspace root: the nearest parent holding uv.lock and a deploy/ dir."""
    here = (start or Path(__file__)).resolve()
    for candidate in [here, *here.parents]:
        if (candidate / "uv.lock").is_file() and (candidate / "deploy").is_dir():
            return candidate
    cwd = Path.cwd().resolve()
    for candidate in [cwd, *cwd.parents]:
        if (candidate / "uv.lock").is_file():
            return candidate
    raise RuntimeError("cannot find the OrderFlow repository root (uv.lock)")


def chroot_safe(path: Path) -> bool:
    """True when every existing component of `path` is root-owned, not group/other
    writable and traversable by others: what sshd's ChrootDirectory and the `postgres`
    OS user need."""
    current = Path("/")
    for part in path.resolve().parts[1:]:
        current = current / part
        if not current.exists():
            break
        info = current.stat()
        if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return False
        if not info.st_mode & stat.S_IXOTH:
            return False
    return True


@dataclass(frozen=True)
class StackConfig:
    repo_root: Path
    state_dir: Path
    port_offset: int = 0
    environment: str = "development"
    ports: dict[str, int] = field(default_factory=dict)
    export_workers: int = DEFAULT_EXPORT_WORKERS

    @classmethod
    def from_env(
        cls,
        *,
        state_dir: Path | None = None,
        port_offset: int | None = None,
        environment: str | None = None,
    ) -> StackConfig:
        root = find_repo_root()
        if state_dir is None:
            env_dir = os.environ.get("ORDERFLOW_STATE_DIR")
            state_dir = Path(env_dir) if env_dir else root / ".run"
        if port_offset is None:
            port_offset = int(os.environ.get("ORDERFLOW_PORT_OFFSET", "0"))
        workers = int(os.environ.get("EXPORT_WORKERS") or DEFAULT_EXPORT_WORKERS)
        if not 1 <= workers <= MAX_EXPORT_WORKERS:
            raise ValueError(f"EXPORT_WORKERS must be 1 to {MAX_EXPORT_WORKERS}, not {workers}")
        base = {
            **DEFAULT_PORTS,
            **ROLE_PORTS,
            **{export_worker_name(n): EXPORT_WORKER_BASE_PORT + n for n in range(1, workers + 1)},
        }
        ports = {name: port + port_offset for name, port in base.items()}
        return cls(
            repo_root=root,
            state_dir=state_dir.resolve(),
            port_offset=port_offset,
            environment=environment or "development",
            ports=ports,
            export_workers=workers,
        )

    @property
    def role_processes(self) -> dict[str, tuple[str, str]]:
        """Every background process of the stack: name -> (service, role)."""
        workers = {
            export_worker_name(n): ("export-service", "worker")
            for n in range(1, self.export_workers + 1)
        }
        return {**ROLE_PROCESSES, **workers}

    def processes_of(self, service: str) -> list[str]:
        """The processes of one service: its HTTP API first, then its roles."""
        return [service, *(n for n, (owner, _) in self.role_processes.items() if owner == service)]

    # --- paths -------------------------------------------------------------------
    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pids_dir(self) -> Path:
        return self.state_dir / "pids"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.pids_dir / f"{name}.pid"

    @property
    def system_dir(self) -> Path:
        """Where the parts that need root-owned parents live (Postgres data, the sftp
        chroot): the state dir itself when it is safe, else a directory under
        /var/lib/orderflow named after the state dir, linked from the state dir."""
        if chroot_safe(self.state_dir.parent):
            return self.state_dir
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:16]
        return SYSTEM_BASE / digest

    @property
    def dropzone_dir(self) -> Path:
        return self.state_dir / "dropzone"

    @property
    def inbox_dir(self) -> Path:
        return self.dropzone_dir / "inbox"

    @property
    def storage_dir(self) -> Path:
        return self.state_dir / "storage"

    @property
    def audit_archive_dir(self) -> Path:
        """audit-service's retention archives (AUDIT_ARCHIVE_DIR, owned by its user)."""
        return self.state_dir / "audit-archive"

    @property
    def local_dropzone_root(self) -> Path:
        """Root of `local_dropzone` connections (each org's inside `<root>/<org_id>/`)."""
        return self.state_dir / "local-dropzones"

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / "secrets.json"

    @property
    def stack_file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def python(self) -> str:
        venv_python = self.repo_root / ".venv" / "bin" / "python"
        return str(venv_python) if venv_python.exists() else "python3"

    # --- secrets -----------------------------------------------------------------
    def secrets(self) -> dict[str, str]:
        """Passwords and keys, generated once per state dir (a state dir made before a
        secret existed gets it added)."""
        loaded: dict[str, str] = {}
        if self.secrets_file.exists():
            loaded = json.loads(self.secrets_file.read_text())
        else:
            self._forget_orphaned_system_dir()
        missing = {key: make() for key, make in _secret_makers().items() if key not in loaded}
        if not missing:
            return loaded
        values = {**loaded, **missing}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.secrets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(values, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.secrets_file)
        return values

    def _forget_orphaned_system_dir(self) -> None:
        """A state dir without secrets is new; a system dir (Postgres data, the sftp
        chroot) already there under its name was left by a state dir deleted by hand,
        with passwords nobody knows any more: it goes, as `make clean` would have."""
        system = self.system_dir
        if system != self.state_dir and system.is_dir() and system.is_relative_to(SYSTEM_BASE):
            shutil.rmtree(system)

    def kafka_password(self, principal: str) -> str:
        """The SCRAM password of a Kafka principal (orderflow_shared.messaging.acls)."""
        return self.secrets()[kafka_secret_key(principal)]

    def kafka_options(self, principal: str = "admin") -> dict[str, Any]:
        """aiokafka keyword arguments of a client that logs in as `principal`."""
        from orderflow_shared.messaging.kafka import sasl_options

        return sasl_options(
            self.kafka_bootstrap,
            username=principal,
            password=self.kafka_password(principal),
            security_protocol=KAFKA_SECURITY_PROTOCOL,
            mechanism=KAFKA_SASL_MECHANISM,
        )

    def kafka_env(self, principal: str) -> dict[str, str]:
        """The KAFKA_* settings of a process that connects as `principal`."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "KAFKA_SECURITY_PROTOCOL": KAFKA_SECURITY_PROTOCOL,
            "KAFKA_SASL_MECHANISM": KAFKA_SASL_MECHANISM,
            "KAFKA_USERNAME": principal,
            "KAFKA_PASSWORD": self.kafka_password(principal),
        }

    # --- derived URLs ------------------------------------------------------------
    def role_password(self, role: str) -> str:
        return self.secrets()[f"{role}_password"]

    def superuser_dsn(self) -> str:
        pw = self.role_password("postgres")
        return f"postgresql://postgres:{pw}@127.0.0.1:{self.ports['postgres']}/{DATABASE}"

    def sqlalchemy_url(self, role: str) -> str:
        pw = self.role_password(role)
        return f"postgresql+psycopg://{role}:{pw}@127.0.0.1:{self.ports['postgres']}/{DATABASE}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['redis']}/0"

    @property
    def kafka_bootstrap(self) -> str:
        """Every broker of the stack (KAFKA_BROKERS, orderflow_devstack.kafka_cluster)."""
        from orderflow_devstack.kafka_cluster import bootstrap_servers

        return bootstrap_servers(self)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def gateway_url(self) -> str:
        return f"http://localhost:{self.ports['gateway']}"

    def service_env(self, service: str, process: str | None = None) -> dict[str, str]:
        """The environment a process of a service runs with (docs/DEVELOPING.md); it
        listens on the port of `process` (default: the service's HTTP API)."""
        runtime_role, owner_role = SERVICE_ROLES[service]
        values = self.secrets()
        env = {
            "ORDERFLOW_ENV": self.environment,
            "SERVICE_NAME": service,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.ports[process or service]),
            "DATABASE_URL": self.sqlalchemy_url(runtime_role),
            "MIGRATION_DATABASE_URL": self.sqlalchemy_url(owner_role),
            "REDIS_URL": self.redis_url,
            **self.kafka_env(service),
            "KAFKA_TOPIC_PARTITIONS": "6",
            "KAFKA_REPLICATION_FACTOR": "1",
            "JWT_ALGORITHM": "HS256",
            "JWT_SECRET": values["jwt_secret"],
            "JWT_ISSUER": "orderflow",
            "JWT_AUDIENCE": "orderflow",
            "LOG_LEVEL": "INFO",
        }
        if service == "draft-api":
            # the operator console (/ui) calls the services' APIs with the user's token
            env["CONSOLE_DRAFT_API_URL"] = self.url("draft-api")
            env["CONSOLE_EXPORT_SERVICE_URL"] = self.url("export-service")
            env["CONSOLE_AUDIT_SERVICE_URL"] = self.url("audit-service")
            # the stack's sshd listens on 127.0.0.1: its host key may be fetched
            env["CONSOLE_ALLOW_PRIVATE_SSH_TARGETS"] = "true"
        if service == "export-service":
            env["EXPORT_ENCRYPTION_KEY"] = values["export_encryption_key"]
            env["EXPORT_STORAGE_DIR"] = str(self.storage_dir)
            # local_dropzone directories: inside <state>/local-dropzones/<org_id>/
            env["EXPORT_LOCAL_DROPZONE_ROOTS"] = str(self.local_dropzone_root)
            # the stack's sshd listens on 127.0.0.1
            env["EXPORT_SFTP_ALLOW_PRIVATE_TARGETS"] = "true"
            if self.environment == "test":
                env.update(delivery_env_for_tests())
        from orderflow_devstack import monitoring

        env.update(monitoring.tracing_env(self))  # spans to the stack's Zipkin, if it runs
        if service == "audit-service":
            env["AUDIT_SIGNING_KEY"] = values["audit_signing_key"]
            env["AUDIT_ARCHIVE_DIR"] = str(self.audit_archive_dir)
        return env

    def describe(self, sftp: dict[str, Any] | None = None) -> dict[str, Any]:
        """The content of stack.json."""
        return {
            "state_dir": str(self.state_dir),
            "port_offset": self.port_offset,
            "environment": self.environment,
            "ports": self.ports,
            "urls": {
                "gateway": self.gateway_url,
                **{name: self.url(name) for name in SERVICES},
            },
            "processes": {
                name: {
                    "service": service,
                    "role": role,
                    "port": self.ports[name],
                    "url": self.url(name),
                }
                for name, (service, role) in {
                    **{name: (name, "serve") for name in SERVICES},
                    **self.role_processes,
                }.items()
            },
            "database": {
                "superuser_dsn": self.superuser_dsn(),
                "services": {
                    name: {
                        "database_url": self.sqlalchemy_url(SERVICE_ROLES[name][0]),
                        "migration_database_url": self.sqlalchemy_url(SERVICE_ROLES[name][1]),
                    }
                    for name in SERVICES
                },
            },
            "redis_url": self.redis_url,
            "kafka_bootstrap_servers": self.kafka_bootstrap,
            "kafka": {
                "bootstrap_servers": self.kafka_bootstrap,
                "security_protocol": KAFKA_SECURITY_PROTOCOL,
                "sasl_mechanism": KAFKA_SASL_MECHANISM,
                "principals": list(KAFKA_PRINCIPALS),
                "integration_group_prefix": INTEGRATION_GROUP_PREFIX,
                "passwords": f"{self.secrets_file} (kafka_<principal>_password)",
            },
            "dropzone_dir": str(self.dropzone_dir),
            "inbox_dir": str(self.inbox_dir),
            "storage_dir": str(self.storage_dir),
            "sftp": sftp or {},
            "secrets_file": str(self.secrets_file),
            "monitoring": _monitoring(self),
            "logs_dir": str(self.logs_dir),
        }

    def write_stack_file(self, sftp: dict[str, Any] | None = None) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.stack_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.describe(sftp), indent=2) + "\n")
        tmp.chmod(0o600)
        tmp.replace(self.stack_file)


def _monitoring(cfg: StackConfig) -> dict[str, Any]:
    from orderflow_devstack import monitoring

    return monitoring.describe(cfg)
